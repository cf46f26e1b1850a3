import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT, SHARED_DIR, SHARED_PRESENT } from "./paths.js";

/**
 * Compiles src/ to dist/, and says, once per `npm test`, which data the tests run on: the team's ../shared (SHARED_DIR) when present,
 * else only what ships in the repository. Tests needing ../shared are then not run, and this line says so;
 * test names of the data-dependent suites carry the data set too. An explicit SHARED_DIR that holds no
 * shared data (CI sets it) is an error, never a quiet fallback.
 */
export default function setup(): void {
  // The tests that run the service as a child process run what `npm start` runs: dist/, compiled from
  // this checkout's src/ now (about 0.3 s).
  execFileSync(process.execPath, [path.join(REPO_ROOT, "scripts/build.mjs")], { stdio: "inherit" });
  if (SHARED_PRESENT) {
    console.log(
      `[data] shared models and datasets at ${SHARED_DIR}: running the full-dataset tests too ` +
        "(e2e on the full xsdd, squeezenet1.1 embedding, neu_det split.csv, the type prior on magnetic_tile).",
    );
    return;
  }
  if (process.env.SHARED_DIR) {
    throw new Error(
      `SHARED_DIR=${process.env.SHARED_DIR} is set but ${existsSync(SHARED_DIR) ? "lacks datasets/xsdd or models/squeezenet1.1" : "does not exist"}; ` +
        "unset it to test on the shipped model and sample only.",
    );
  }
  console.log(
    `[data] NO shared data at ${SHARED_DIR}: testing on the shipped model (models/) and sample (samples/xsdd). ` +
      "NOT RUN: e2e on the full xsdd (runs on the sample instead), squeezenet1.1 embedding, neu_det split.csv " +
      "(runs on the sample instead), the type prior on magnetic_tile (runs on the sample with one class as " +
      "normal images instead). Set SHARED_DIR to run them.",
  );
}
