/**
 * Calibrates the near-duplicate threshold: the raw cosine similarity (L2-normalised embeddings, the
 * service's own embedder) at or above which a new gallery image counts as a near-duplicate of its nearest
 * gallery neighbour. A measurement tool, not product code; results go to docs/near-duplicates.md.
 *
 *   npm run calibrate:near-duplicates -- [--datasets-dir ../shared/datasets] [--models-dir ../shared/models]
 *     [--presets mobilenetv2-12-int8,mobilenetv2-1.0,squeezenet1.1] [--per-class 60] [--seed 42]
 *     [--reference gallery|sample] [--diagnostic-images 40]
 *     [--json bench/results/near-duplicates.json]
 *
 * Per dataset (gallery split only), a class-stratified sample (at most `--per-class` (default 60) images of each
 * product + defect type) is embedded, and:
 * - positives: each sampled image against its own re-encoding, resized to a factor in {0.5 .. 0.9} of its
 *   size and recompressed as JPEG at quality {70 .. 90} (both drawn per image, seeded);
 * - negatives: each sampled image's nearest neighbour among the other gallery images of its class (the
 *   whole gallery split by default, as the service would search it; `--reference sample`: only the sample,
 *   faster but biased low), leaving out byte-identical files, files of one near-duplicate group of split.csv
 *   and pairs listed in near_duplicates.csv (those are duplicates, not distinct images; their similarities
 *   are reported apart).
 * One positive and one negative per image, so precision is measured at a 1:1 mix.
 */
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Command, Option } from "commander";
import { parse } from "csv-parse/sync";
import sharp from "sharp";
import { loadConfig } from "../src/config/config.js";
import { createEmbedder, type Embedder } from "../src/embedding/embedder.service.js";
import { loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { sha256File } from "../src/embedding/model.file.js";
import { type DatasetImage, listDatasetImages } from "../src/ingest/dataset.reader.js";
import { sha256 } from "../src/shared/hash.js";
import { seededRandom } from "./synthetic.js";

const SCALES = [0.5, 0.6, 0.7, 0.8, 0.9] as const;
const QUALITIES = [70, 75, 80, 85, 90] as const;
/** The precision the chosen threshold must reach on every dataset. */
const PRECISION_TARGET = 0.99;
/** Thresholds tried, in steps of 0.001 (cosine similarity). */
const GRID = Array.from({ length: 1001 }, (_, i) => i / 1000);

/** Similarities of one model on one dataset. */
interface Measurement {
  dataset: string;
  /** Sampled images (one positive and at most one negative each). */
  images: number;
  /** Images the nearest neighbours were searched among. */
  referenceImages: number;
  /** Image vs its own resized + recompressed copy (cosine similarity). */
  positives: number[];
  /** Resize factor of each positive's copy. */
  scales: number[];
  /** Image vs its nearest distinct same-class neighbour (cosine similarity). */
  negatives: number[];
  /**
   * Similarities of the same-class pairs left out of the negatives as duplicates (one near-duplicate group of
   * split.csv, or identical bytes): the datasets' own near-duplicates, a second set of positives.
   */
  groupPairs: number[];
  /** Median similarity per diagnostic re-encoding (resize factor x format), on the first images of the sample. */
  diagnostic: { variant: string; median: number }[];
}

/** Precision, recall and false-positive rate of "similarity >= t is a near-duplicate". */
function rates(m: Measurement, t: number) {
  const tp = m.positives.filter((s) => s >= t).length;
  const fp = m.negatives.filter((s) => s >= t).length;
  return {
    precision: tp + fp === 0 ? 1 : tp / (tp + fp),
    recall: tp / m.positives.length,
    fpr: fp / m.negatives.length,
    f1: tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + (m.positives.length - tp)),
  };
}

/** The lowest grid threshold with precision >= target (most recall at that precision). */
const lowestAtPrecision = (m: Measurement) =>
  GRID.find((t) => rates(m, t).precision >= PRECISION_TARGET && rates(m, t).recall > 0) ?? 1;
/**
 * The grid threshold with the highest F1 (lowest of ties); null when that is the lowest similarity seen,
 * i.e. flagging every image scores best, which says the two distributions do not separate.
 */
const bestF1 = (m: Measurement): number | null => {
  const t = GRID.reduce((best, x) => (rates(m, x).f1 > rates(m, best).f1 ? x : best), GRID[0] ?? 0);
  return t <= Math.min(...m.positives, ...m.negatives) ? null : t;
};

/** Nearest-rank percentile `p` (0-100) of `xs`. */
function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}

const dot = (a: Float32Array, b: Float32Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
};

/** A class-stratified sample: at most `perClass` images of each product + defect type, seeded. */
function stratifiedSample(images: readonly DatasetImage[], perClass: number, seed: number): DatasetImage[] {
  const rand = seededRandom(seed);
  const byClass = new Map<string, DatasetImage[]>();
  for (const im of images) {
    const key = `${im.productCode}/${im.defectCode ?? "normal"}`;
    byClass.set(key, [...(byClass.get(key) ?? []), im]);
  }
  return [...byClass.values()].flatMap((members) => {
    const shuffled = [...members];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j] as DatasetImage, shuffled[i] as DatasetImage];
    }
    return shuffled.slice(0, perClass);
  });
}

/**
 * The image resized to `scale` of its width and height (lanczos3, sharp's default) and written as JPEG
 * at `quality`: what a second upload of the same photo through another tool looks like.
 */
async function reencode(bytes: Buffer, scale: number, quality: number | "png"): Promise<Buffer> {
  const meta = await sharp(bytes).metadata();
  const width = Math.max(1, Math.round((meta.width ?? 1) * scale));
  const height = Math.max(1, Math.round((meta.height ?? 1) * scale));
  const resized = scale === 1 ? sharp(bytes) : sharp(bytes).resize(width, height, { fit: "fill" });
  return quality === "png" ? resized.png().toBuffer() : resized.jpeg({ quality }).toBuffer();
}

/** Re-encodings of the diagnostic: each step alone and together, at the ends of the ranges. */
const DIAGNOSTIC_VARIANTS = [
  { variant: "x1 JPEG 90", scale: 1, quality: 90 },
  { variant: "x1 JPEG 70", scale: 1, quality: 70 },
  { variant: "x0.9 PNG", scale: 0.9, quality: "png" },
  { variant: "x0.5 PNG", scale: 0.5, quality: "png" },
  { variant: "x0.9 JPEG 90", scale: 0.9, quality: 90 },
  { variant: "x0.5 JPEG 70", scale: 0.5, quality: 70 },
] as const;

/** Embeds in chunks (the embedder batches inside each); throws on the first image that fails. */
async function embedAll(embedder: Embedder, buffers: readonly Buffer[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let i = 0; i < buffers.length; i += 32) {
    for (const o of await embedder.embedMany(buffers.slice(i, i + 32))) {
      if (!o.ok) throw o.error;
      out.push(o.embedding);
    }
  }
  return out;
}

/** Key of an unordered pair of paths relative to the dataset root. */
const pairKey = (a: string, b: string) => (a < b ? `${a}|${b}` : `${b}|${a}`);

/**
 * The pairs of the dataset's `near_duplicates.csv` (columns path_a, path_b, relative to the datasets folder,
 * i.e. starting with the dataset's name), keyed by {@link pairKey} of their paths relative to the dataset root.
 */
async function listedNearDuplicates(datasetDir: string): Promise<Set<string>> {
  let text: string;
  try {
    text = await readFile(path.join(datasetDir, "near_duplicates.csv"), "utf8");
  } catch {
    return new Set();
  }
  const rows = parse(text, { columns: true }) as { path_a: string; path_b: string }[];
  const rel = (p: string) => p.split("/").slice(1).join("/");
  return new Set(rows.map((r) => pairKey(rel(r.path_a), rel(r.path_b))));
}

async function measure({
  embedder,
  dataset,
  sample,
  reference,
  listedPairs,
  seed,
  diagnosticImages,
}: {
  embedder: Embedder;
  dataset: string;
  /** Images whose re-encoding and nearest neighbour are measured. */
  sample: readonly DatasetImage[];
  /** Images the nearest distinct neighbour is searched among (the gallery, or the sample itself). */
  reference: readonly DatasetImage[];
  /** Pairs listed in the dataset's near_duplicates.csv ({@link pairKey}). */
  listedPairs: ReadonlySet<string>;
  seed: number;
  /** Images of the sample the diagnostic re-encodes. */
  diagnosticImages: number;
}): Promise<Measurement> {
  const rand = seededRandom(seed + 1);
  const inSample = new Set(sample.map((im) => im.path));
  // The sample first, then the rest of the reference, each embedded once.
  const all = [...sample, ...reference.filter((im) => !inSample.has(im.path))];
  const bytes = await Promise.all(all.map((im) => readFile(im.path)));
  const hashes = bytes.map((b) => sha256(b));
  const embeddings = await embedAll(embedder, bytes);
  const sampleBytes = bytes.slice(0, sample.length);
  const scales = sampleBytes.map(() => SCALES[Math.floor(rand() * SCALES.length)] ?? 0.5);
  const qualities = sampleBytes.map(() => QUALITIES[Math.floor(rand() * QUALITIES.length)] ?? 70);
  const copies = await embedAll(
    embedder,
    await Promise.all(sampleBytes.map((b, i) => reencode(b, scales[i] ?? 0.5, qualities[i] ?? 70))),
  );
  const at = (i: number) => embeddings[i] as Float32Array;
  const positives = copies.map((v, i) => dot(v, at(i)));
  const negatives: number[] = [];
  const groupPairs = new Map<string, number>();
  sample.forEach((im, i) => {
    let best = Number.NEGATIVE_INFINITY;
    all.forEach((other, j) => {
      if (j === i || other.productCode !== im.productCode || other.defectCode !== im.defectCode) return;
      const key = pairKey(im.relPath, other.relPath);
      if (
        hashes[j] === hashes[i] ||
        (im.groupId !== null && other.groupId === im.groupId) ||
        listedPairs.has(key)
      ) {
        groupPairs.set(key, dot(at(i), at(j)));
        return;
      }
      best = Math.max(best, dot(at(i), at(j)));
    });
    if (best > Number.NEGATIVE_INFINITY) negatives.push(best);
  });
  // Which step costs the similarity: resize alone (lossless PNG), JPEG alone, both.
  const few = sampleBytes.slice(0, diagnosticImages);
  const diagnostic = [];
  for (const { variant, scale, quality } of DIAGNOSTIC_VARIANTS) {
    const variants = await embedAll(embedder, await Promise.all(few.map((b) => reencode(b, scale, quality))));
    const sims = variants.map((v, i) => dot(v, at(i)));
    diagnostic.push({ variant, median: percentile(sims, 50) });
  }
  return {
    dataset,
    images: sample.length,
    referenceImages: all.length,
    positives,
    scales,
    negatives,
    groupPairs: [...groupPairs.values()],
    diagnostic,
  };
}

const opts = new Command()
  .option("--datasets-dir <dir>", "folder of dataset folders", path.join("..", "shared", "datasets"))
  .option("--models-dir <dir>", "folder of the shared models", path.join("..", "shared", "models"))
  .option("--presets <list>", "model presets", "mobilenetv2-12-int8,mobilenetv2-1.0,squeezenet1.1")
  .option("--per-class <n>", "images sampled per product + defect type", "60")
  .addOption(
    new Option("--reference <set>", "where nearest distinct neighbours are searched")
      .choices(["gallery", "sample"])
      .default("gallery"),
  )
  .option("--seed <n>", "sampling seed", "42")
  .option("--diagnostic-images <n>", "images per dataset the resize/JPEG diagnostic re-encodes", "40")
  .option(
    "--json <file>",
    "also write the results as JSON here",
    path.join("bench", "results", "near-duplicates.json"),
  )
  .parse()
  .opts<{
    datasetsDir: string;
    modelsDir: string;
    presets: string;
    perClass: string;
    seed: string;
    reference: "gallery" | "sample";
    diagnosticImages: string;
    json: string;
  }>();

const perClass = Number(opts.perClass);
const diagnosticImages = Number(opts.diagnosticImages);
const seed = Number(opts.seed);
const datasetNames = (await readdir(opts.datasetsDir, { withFileTypes: true }))
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();
const samples = await Promise.all(
  datasetNames.map(async (name) => {
    const dir = path.join(opts.datasetsDir, name);
    const gallery = await listDatasetImages({ root: dir, split: "gallery" });
    const sample = stratifiedSample(gallery, perClass, seed);
    return {
      name,
      sample,
      reference: opts.reference === "gallery" ? gallery : sample,
      listedPairs: await listedNearDuplicates(dir),
    };
  }),
);

const fmt = (x: number) => x.toFixed(3);
const results: {
  preset: string;
  modelId: string;
  threshold: number;
  measurements: (Measurement & { f1Threshold: number | null; lowestAt99: number })[];
}[] = [];
for (const preset of opts.presets.split(",")) {
  // The default preset ships in the repository (models/); the others are in the shared models folder.
  const config = loadConfig({
    MODELS_DIR: preset === "mobilenetv2-12-int8" ? "models" : opts.modelsDir,
    MODEL_PRESET: preset,
  });
  const model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
  const embedder = createEmbedder({
    model,
    modelConfig: config.model,
    limits: { maxBytes: 50_000_000, maxPixels: 40_000_000 },
  });
  const t0 = performance.now();
  const measurements = [];
  for (const { name, sample, reference, listedPairs } of samples) {
    const m = await measure({
      embedder,
      dataset: name,
      sample,
      reference,
      listedPairs,
      seed,
      diagnosticImages,
    });
    measurements.push({ ...m, f1Threshold: bestF1(m), lowestAt99: lowestAtPrecision(m) });
  }
  await model.close();
  // One default per model: the strictest dataset's lowest threshold at the precision target.
  const threshold = Math.max(...measurements.map((m) => m.lowestAt99));
  results.push({ preset, modelId: model.modelId, threshold, measurements });
  console.error(`${preset}: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

const lines: string[] = [];
lines.push(
  `Sample: at most ${perClass} gallery images per class (seed ${seed}); one re-encoding and one nearest distinct neighbour per image, searched among the ${opts.reference === "gallery" ? "whole gallery" : "sample"} of its class.`,
  "",
  "| model | dataset | images (searched among) | threshold | precision | recall | FPR | F1-best t | lowest t at P>=0.99 | re-encodings p1 / p5 / p50 / min | distinct NN p50 / p95 / p99 / max | dataset near-dup pairs: n, p5 / p50, recall |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|",
);
for (const r of results) {
  for (const m of r.measurements) {
    const at = rates(m, r.threshold);
    const p = m.positives;
    const n = m.negatives;
    lines.push(
      `| ${r.preset} | ${m.dataset} | ${m.images} (${m.referenceImages}) | ${fmt(r.threshold)} | ${fmt(at.precision)} | ${fmt(at.recall)} | ${fmt(at.fpr)} | ${m.f1Threshold === null ? "none" : fmt(m.f1Threshold)} | ${fmt(m.lowestAt99)} | ` +
        `${fmt(percentile(p, 1))} / ${fmt(percentile(p, 5))} / ${fmt(percentile(p, 50))} / ${fmt(Math.min(...p))} | ` +
        `${fmt(percentile(n, 50))} / ${fmt(percentile(n, 95))} / ${fmt(percentile(n, 99))} / ${fmt(Math.max(...n))} | ` +
        (m.groupPairs.length === 0
          ? "0 |"
          : `${m.groupPairs.length}, ${fmt(percentile(m.groupPairs, 5))} / ${fmt(percentile(m.groupPairs, 50))}, ${fmt(m.groupPairs.filter((x) => x >= r.threshold).length / m.groupPairs.length)} |`),
    );
  }
}
lines.push(
  "",
  "Recall at the chosen threshold by resize factor of the copy (JPEG quality 70-90 mixed):",
  "",
  `| model | dataset | ${SCALES.map((f) => `x${f}`).join(" | ")} |`,
  `|---|---|${SCALES.map(() => "---").join("|")}|`,
);
for (const r of results) {
  for (const m of r.measurements) {
    const cells = SCALES.map((f) => {
      const at = m.positives.filter((_, i) => m.scales[i] === f);
      return at.length === 0 ? "-" : fmt(at.filter((x) => x >= r.threshold).length / at.length);
    });
    lines.push(`| ${r.preset} | ${m.dataset} | ${cells.join(" | ")} |`);
  }
}
lines.push(
  "",
  `Median similarity to the original by re-encoding (first ${diagnosticImages} sampled images per dataset):`,
  "",
  `| model | dataset | ${DIAGNOSTIC_VARIANTS.map((v) => v.variant).join(" | ")} |`,
  `|---|---|${DIAGNOSTIC_VARIANTS.map(() => "---").join("|")}|`,
);
for (const r of results) {
  for (const m of r.measurements) {
    lines.push(`| ${r.preset} | ${m.dataset} | ${m.diagnostic.map((d) => fmt(d.median)).join(" | ")} |`);
  }
}
lines.push("", "Chosen thresholds (modelPreset -> threshold):", "");
for (const r of results) lines.push(`- ${r.preset} -> ${fmt(r.threshold)} (model id ${r.modelId})`);
console.log(lines.join("\n"));

await mkdir(path.dirname(opts.json), { recursive: true });
await writeFile(
  opts.json,
  `${JSON.stringify(
    results.map((r) => ({
      ...r,
      measurements: r.measurements.map(({ positives, negatives, groupPairs, ...m }) => ({
        ...m,
        ...rates({ ...m, positives, negatives, groupPairs }, r.threshold),
        groupPairs: groupPairs.map((x) => Number(x.toFixed(5))),
        positives: positives.map((s) => Number(s.toFixed(5))),
        negatives: negatives.map((s) => Number(s.toFixed(5))),
      })),
    })),
    null,
    2,
  )}\n`,
);
