import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

setFlagsFromString("--expose-gc");
const gcFn = runInNewContext("gc") as (() => void) | undefined;

/** Runs a full garbage collection (twice, so weak and finalised objects go too). */
export function collectGarbage(): void {
  gcFn?.();
  gcFn?.();
}

/** Resident set size after a garbage collection (bytes): native memory (FAISS, onnxruntime) included. */
export function settledRss(): number {
  collectGarbage();
  return process.memoryUsage().rss;
}

/** Bytes as `1.23 GB` / `456 MB` / `7.8 KB`. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return "n/a";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(v >= 100 || u === 0 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}
