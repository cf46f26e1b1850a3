import type { AppConfig } from "./config.js";

/**
 * Thread settings of the native libraries behind FAISS, applied to the process environment before the
 * first FAISS worker loads them: libgomp and OpenBLAS read them once, when they are loaded, and worker
 * threads share the process environment. Values an operator set explicitly are kept.
 * - `OMP_NUM_THREADS` / `OPENBLAS_NUM_THREADS`: FAISS's parallel loops and BLAS calls (FAISS_THREADS).
 * - `OMP_WAIT_POLICY=PASSIVE`: idle OpenMP threads sleep instead of spinning (GCC libgomp's default
 *   spins for a while), so they do not take the cores inference and decoding need.
 * @returns what is in force.
 */
export function applyNativeThreadSettings(config: Pick<AppConfig, "index">): Record<string, string> {
  const wanted: Record<string, string> = {
    OMP_NUM_THREADS: String(config.index.threads),
    OPENBLAS_NUM_THREADS: String(config.index.threads),
    OMP_WAIT_POLICY: "PASSIVE",
  };
  const inForce: Record<string, string> = {};
  for (const [name, value] of Object.entries(wanted)) {
    if (process.env[name] === undefined) process.env[name] = value;
    inForce[name] = process.env[name] ?? value;
  }
  return inForce;
}
