/**
 * The perceptual-hash part of the near-duplicate rule, measured on labelled datasets
 * (`npm run calibrate:near-duplicate-hash -- <dataset folders...>`): for up to 60 gallery images per class,
 * the pHash Hamming distance (of 64 bits, `sharp-phash`) between the image and a copy resized to 0.5-0.9 and
 * saved as JPEG at quality 70-90 (positives), and between the image and its nearest distinct image of
 * the class by raw embedding, among up to 200 (negatives; pairs of near_duplicates.csv and of one split.csv
 * group left out, as `bench/near-duplicates.ts` does). Prints recall and false flags per distance.
 */

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { pino } from "pino";
import sharp from "sharp";
import { loadConfig } from "../src/config/config.js";
import { createEmbedder } from "../src/embedding/embedder.service.js";
import { loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { ensureModelFile } from "../src/embedding/model.file.js";
import { type DatasetImage, listDatasetImages } from "../src/ingest/dataset.reader.js";

const require = createRequire(import.meta.url);
const phash = require("sharp-phash") as (image: Buffer) => Promise<string>;
const distance = require("sharp-phash/distance") as (a: string, b: string) => number;

const config = loadConfig({ DATABASE_URL: "postgres://unused/unused", ...process.env });
const model = await loadEmbeddingModel(
  config.model,
  await ensureModelFile(config.model, pino({ level: "silent" })),
);
const embedder = createEmbedder({
  model,
  modelConfig: config.model,
  limits: { maxBytes: 1e9, maxPixels: 1e9, minSide: 8 },
});
const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * (b[i] as number), 0);
const quantile = (a: number[], p: number) => [...a].sort((x, y) => x - y)[Math.floor(p * (a.length - 1))];

console.log(`model ${config.model.name}`);
console.log(
  "| dataset | positives | negatives | d<=4 recall / false | d<=6 recall / false | d<=8 recall / false | positive d p95 | negative d p5 |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const root of process.argv.slice(2)) {
  const hasSplit = await readFile(path.join(root, "split.csv")).then(
    () => true,
    () => false,
  );
  const all = await listDatasetImages({ root, split: hasSplit ? "gallery" : undefined });
  const listed = new Set<string>();
  const csv = await readFile(path.join(root, "near_duplicates.csv"), "utf8").catch(() => "");
  for (const line of csv.split("\n").slice(1)) {
    const [a, b] = line.split(",");
    if (a && b)
      listed.add(`${path.basename(a)}|${path.basename(b)}`).add(`${path.basename(b)}|${path.basename(a)}`);
  }
  const byClass = new Map<string, DatasetImage[]>();
  for (const im of all) {
    const k = `${im.productCode}/${im.defectCode}`;
    byClass.set(k, [...(byClass.get(k) ?? []), im]);
  }
  const pos: number[] = [];
  const neg: number[] = [];
  for (const imgs of byClass.values()) {
    const sample = imgs.slice(0, 200);
    const bytes = await Promise.all(sample.map((i) => readFile(i.path)));
    const emb = await embedder.embedMany(bytes);
    const hashes = await Promise.all(bytes.map((b) => phash(b)));
    for (let i = 0; i < Math.min(60, sample.length); i++) {
      const b = bytes[i] as Buffer;
      const width = (await sharp(b).metadata()).width ?? 100;
      const factor = 0.5 + ((i * 7) % 5) / 10;
      const quality = 70 + ((i * 3) % 3) * 10;
      const copy = await sharp(b)
        .resize(Math.round(width * factor))
        .jpeg({ quality })
        .toBuffer();
      pos.push(distance(hashes[i] as string, await phash(copy)));
      let best = -2;
      let nearest = -1;
      const a = emb[i];
      for (let j = 0; j < sample.length; j++) {
        const c = emb[j];
        const [x, y] = [sample[i] as DatasetImage, sample[j] as DatasetImage];
        if (j === i || !a?.ok || !c?.ok) continue;
        if (listed.has(`${path.basename(x.path)}|${path.basename(y.path)}`)) continue;
        if (x.groupId !== null && x.groupId === y.groupId) continue;
        const s = dot(a.embedding, c.embedding);
        if (s > best && s < 0.9999) [best, nearest] = [s, j];
      }
      if (nearest >= 0) neg.push(distance(hashes[i] as string, hashes[nearest] as string));
    }
  }
  const at = (t: number) =>
    `${(pos.filter((d) => d <= t).length / pos.length).toFixed(3)} / ${neg.filter((d) => d <= t).length}`;
  console.log(
    `| ${path.basename(root)} | ${pos.length} | ${neg.length} | ${at(4)} | ${at(6)} | ${at(8)} | ${quantile(pos, 0.95)} | ${quantile(neg, 0.05)} |`,
  );
}
await model.close();
