import path from "node:path";
import type { ModelConfig } from "../config/config.js";
import { MODEL_PRESET_NAMES, MODEL_PRESETS, type ModelPreset } from "../config/model-presets.js";
import { errors } from "../shared/errors.js";

/** What an admin gives to register a candidate model. */
export interface ModelRegistration {
  /** A preset name (MODEL_PRESET values): graph names, input size, normalisation. */
  preset: string;
  /** ONNX file; default MODELS_DIR/<preset>/model.onnx. Must be readable on every replica. */
  path?: string | null | undefined;
  /** Expected sha256 (hex) of the file; required with `path`, else the shipped file's when it ships. */
  sha256?: string | null | undefined;
  /** How a non-square image is made square; default the preset's. */
  resizeMode?: "crop" | "fill" | "pad" | null | undefined;
}

/**
 * The part of a {@link ModelConfig} that decides the embeddings (and so the model id): stored with the
 * registered model, so every replica loads it the same way. Per-process settings (threads, batch sizes,
 * the download URL) stay each replica's own.
 */
export type ModelSpec = Omit<ModelConfig, "batchSize" | "threads" | "dynamicBatching" | "downloadUrl">;

/** The stored form of a model configuration. */
export function specOf(config: ModelConfig): ModelSpec {
  const { batchSize: _b, threads: _t, dynamicBatching: _d, downloadUrl: _u, ...spec } = config;
  return spec;
}

/** A stored spec with this process's per-process settings (those of `base`, the configured model). */
export function configFromSpec(base: ModelConfig, spec: ModelSpec): ModelConfig {
  return {
    ...spec,
    batchSize: base.batchSize,
    threads: base.threads,
    dynamicBatching: base.dynamicBatching,
    downloadUrl: undefined,
  };
}

const SHA256 = /^[0-9a-f]{64}$/;

/**
 * Resolves a registration into a model configuration: the preset's values, the given file and checksum,
 * and the configured model's multi-view settings (so a candidate is compared under the same views).
 * @throws DomainError BAD_USER_INPUT for an unknown preset, a malformed sha256, or a path without one.
 */
export function resolveRegistration(base: ModelConfig, modelsDir: string, r: ModelRegistration): ModelConfig {
  if (!(MODEL_PRESET_NAMES as readonly string[]).includes(r.preset))
    throw errors.badInput(`Unknown model preset '${r.preset}'; one of ${MODEL_PRESET_NAMES.join(", ")}.`);
  const preset = MODEL_PRESETS[r.preset as keyof typeof MODEL_PRESETS] as ModelPreset;
  const sha256 = r.sha256?.trim().toLowerCase() || undefined;
  if (sha256 && !SHA256.test(sha256))
    throw errors.badInput("sha256 is 64 hex digits (`sha256sum model.onnx`).");
  if (r.path && !sha256)
    throw errors.badInput(
      "A model given by path needs its sha256 as well, so every replica loads the same file.",
    );
  if (r.path && !path.isAbsolute(r.path))
    throw errors.badInput(`path must be absolute (the same on every replica); got '${r.path}'.`);
  const shipped = r.path ? undefined : preset.shippedSha256;
  return {
    ...preset,
    resizeMode: r.resizeMode ?? preset.resizeMode ?? "crop",
    textureRequired: false,
    path: r.path ?? path.resolve(modelsDir, preset.name, "model.onnx"),
    downloadUrl: undefined,
    sha256: sha256 ?? shipped,
    sha256Source: sha256 ? "MODEL_SHA256" : shipped ? "shipped" : undefined,
    batchSize: base.batchSize,
    threads: base.threads,
    dynamicBatching: base.dynamicBatching,
    views: base.views,
  };
}
