/**
 * Inference throughput of the embedding model in its worker thread: images/s at a fixed batch size (one
 * call of `batch` images at a time), and with `concurrency` single-image calls in flight, which the
 * dynamic batcher merges (INFERENCE_MAX_BATCH). Real query images, preprocessed once.
 *
 *   npx tsx bench/inference.ts --threads 2 --batches 1,4,8,16 --concurrency 1,4,16 --seconds 5
 *   taskset -c 0 npx tsx bench/inference.ts --threads 1 ...    # one core: the per-replica figure
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import { loadConfig } from "../src/config/config.js";
import { loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { inspectImage, preprocessImage } from "../src/embedding/image.decoder.js";
import { sha256File } from "../src/embedding/model.file.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";

const list = (v: string) => v.split(",").map(Number);
const opts = new Command()
  .option("--models-dir <dir>", "models folder", "../shared/models")
  .option("--images <dir>", "query images", "samples/xsdd/held-back")
  .option("--threads <n>", "ORT_THREADS", "2")
  .option("--batches <list>", "fixed batch sizes", "1,4,8,16")
  .option("--concurrency <list>", "single-image calls in flight (dynamic batching)", "1,4,16")
  .option("--max-batch <n>", "INFERENCE_MAX_BATCH for the concurrency runs", "8")
  .option("--seconds <n>", "seconds per setting", "5")
  .parse()
  .opts<{
    modelsDir: string;
    images: string;
    threads: string;
    batches: string;
    concurrency: string;
    maxBatch: string;
    seconds: string;
  }>();

const config = loadConfig({
  MODELS_DIR: opts.modelsDir,
  ORT_THREADS: opts.threads,
  INFERENCE_MAX_BATCH: opts.maxBatch,
});
const model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
const limits = { maxBytes: 50e6, maxPixels: 1e8, minSide: 8 };
const files = (await listDatasetImages({ root: path.resolve(opts.images) })).slice(0, 64);
const tensors = await Promise.all(
  files.map(async (f) => {
    const b = await readFile(f.path);
    return preprocessImage(b, await inspectImage(b, limits), config.model);
  }),
);
const seconds = Number(opts.seconds);
const rows: string[] = [];
const cpu0 = () => process.cpuUsage();
const measure = async (label: string, step: (i: number) => Promise<number>) => {
  await step(0);
  const c = cpu0();
  const t0 = performance.now();
  let images = 0;
  let i = 0;
  while (performance.now() - t0 < seconds * 1000) images += await step(i++);
  const wall = (performance.now() - t0) / 1000;
  const used = process.cpuUsage(c);
  const cpuS = (used.user + used.system) / 1e6;
  rows.push(
    `| ${label} | ${(images / wall).toFixed(1)} | ${(images / cpuS).toFixed(1)} | ${((cpuS / wall) * 100).toFixed(0)}% |`,
  );
};
for (const b of list(opts.batches)) {
  await measure(`batch ${b}`, async (i) => {
    const batch = Array.from({ length: b }, (_, k) => tensors[(i * b + k) % tensors.length] as Uint8Array);
    await model.embed(batch);
    return b;
  });
}
for (const c of list(opts.concurrency)) {
  const before = model.runStats;
  await measure(`${c} single-image calls in flight (max batch ${opts.maxBatch})`, async (i) => {
    await Promise.all(
      Array.from({ length: c }, (_, k) => model.embed([tensors[(i * c + k) % tensors.length] as Uint8Array])),
    );
    return c;
  });
  const after = model.runStats;
  rows.push(
    `|   mean batch | ${((after.inputs - before.inputs) / (after.runs - before.runs)).toFixed(2)} | | |`,
  );
}
await model.close();
console.log(`ORT_THREADS=${opts.threads}, ${seconds} s per row, ${tensors.length} real images`);
console.log("| setting | images/s (wall) | images per CPU-second (process) | CPU |");
console.log("| --- | --- | --- | --- |");
console.log(rows.join("\n"));
