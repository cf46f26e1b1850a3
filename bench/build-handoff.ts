/**
 * The main thread while a large gallery is handed to a FAISS build: `--rows` (1,000,000) 1280-d vectors,
 * L2-normalised, built as `Flat` (FAISS's own work is then only a copy, in the worker) by the service's FAISS
 * worker backend, with the event-loop delay sampled (`monitorEventLoopDelay`, 1 ms resolution) from the
 * call to the built index. A search waiting on the main thread waits at least the longest delay.
 *
 * Usage: npx tsx bench/build-handoff.ts [--rows 1000000] [--factory Flat]
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout } from "node:timers/promises";
import { parseArgs } from "node:util";
import { createFaissWorkerBackend } from "../src/index/faiss/faiss-worker.backend.js";

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    factory: { type: "string", default: "Flat" },
  },
});
const rows = Number(values.rows);
const dimension = 1280;
const vectors = new Float32Array(rows * dimension);
// Deterministic, cheap, unit-length rows (their content does not matter to the hand-off).
for (let r = 0; r < rows; r++) {
  const row = vectors.subarray(r * dimension, (r + 1) * dimension);
  let norm = 0;
  for (let j = 0; j < dimension; j++) {
    const x = Math.sin(r * 0.37 + j * 1.3);
    row[j] = x;
    norm += x * x;
  }
  const inv = 1 / Math.sqrt(norm);
  for (let j = 0; j < dimension; j++) row[j] = (row[j] as number) * inv;
}
const backend = createFaissWorkerBackend({ threads: { build: 1, search: 1 } });
const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
// The sampling timer runs from the next turn: a block right after enable() would not be seen.
await setTimeout(100);
const t0 = performance.now();
const built = await backend.build({
  dimension,
  factory: values.factory ?? "Flat",
  vectors,
  params: {},
  recall: null,
});
const seconds = (performance.now() - t0) / 1000;
h.disable();
console.log(
  `${rows} x ${dimension} (${((rows * dimension * 4) / 2 ** 30).toFixed(2)} GiB), ${values.factory}: built in ${seconds.toFixed(1)} s; event-loop delay p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms, max ${(h.max / 1e6).toFixed(1)} ms`,
);
await built.index.close();
