import { existsSync } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import path from "node:path";
import sharp, { type Sharp } from "sharp";
import type { App } from "../src/app.js";
import { type DatasetImage, listDatasetImages, type SplitName } from "../src/ingest/dataset.reader.js";
import { IMAGE_TYPES } from "../src/shared/types.js";
import type { MachineInfo } from "../tools/shared/machine.js";
import type { ScratchFactory } from "../tools/shared/scratch-env.js";
import type { RealEmbeddings } from "./real-mixture.js";

/** Parts of the benchmark, each runnable alone with `--only`. */
export const PARTS = ["embedding", "search", "http", "rebuild", "startup", "replicas", "gallery"] as const;
/** One part's name. */
export type PartName = (typeof PARTS)[number];

/** Parsed command-line options. */
export interface BenchOptions {
  only: PartName[];
  /** Synthetic gallery sizes for search-only and startup. */
  sizes: number[];
  /** FAISS factory strings for search-only. */
  factories: string[];
  /** Model preset of the http, rebuild and startup parts (and the synthetic dimension). */
  model: string;
  modelsDir: string;
  datasetsDir: string;
  pgAdminUrl: string;
  /** Images ingested per preset in the embedding part. */
  ingestImages: number;
  /** Presets of the embedding part. */
  embedPresets: string[];
  /** Single-image latency samples per preset. */
  latencySamples: number;
  /** HNSW efSearch values to measure (empty: the service's default INDEX_EF_SEARCH). */
  efSearch: number[];
  /** Search-only queries per index. */
  queries: number;
  /** Skip an index whose projected build time exceeds this (s). */
  maxBuildSeconds: number;
  /** Seconds of load per HTTP concurrency level. */
  duration: number;
  concurrency: number[];
  /** Synthetic padding sizes of the HTTP gallery (0 = the real gallery alone). */
  httpSizes: number[];
  /** Query image of the HTTP part; unset: the query-split JPEG closest to 100 KB. */
  queryImage?: string;
  /** Measure searches during a rebuild of each padded HTTP size (as long again as its first build). */
  httpDuringRebuild: boolean;
  /** Real gallery images ingested for the HTTP part (all gallery rows when larger). */
  httpImages: number;
  /** Service variables of every part's service (ORT_THREADS, INFERENCE_MAX_BATCH, ...). */
  serviceEnv: Record<string, string>;
  /** How the HTTP part sends the query image. */
  encodings: ("base64" | "multipart")[];
  /** Real images of the rebuild part. */
  rebuildImages: number;
}

/** Shared state of one benchmark run. */
export interface BenchContext {
  opts: BenchOptions;
  factory: ScratchFactory;
  machine: MachineInfo;
  log(line: string): void;
  /** Embeddings of every real image (computed once per model, then cached on disk). */
  real(): Promise<RealEmbeddings>;
}

/** Dataset folders (with a split.csv) under `dir`. */
export async function datasetRoots(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && existsSync(path.join(dir, e.name, "split.csv")))
    .map((e) => path.resolve(dir, e.name))
    .sort();
}

/**
 * Real labelled images of `split` from every dataset, interleaved (one of each dataset in turn) so any
 * prefix mixes datasets, formats and sizes.
 */
export async function realImages(
  datasetsDir: string,
  split: SplitName,
  limit: number,
): Promise<DatasetImage[]> {
  const lists = await Promise.all(
    (await datasetRoots(datasetsDir)).map((root) => listDatasetImages({ root, split })),
  );
  const out: DatasetImage[] = [];
  for (let i = 0; out.length < limit && lists.some((l) => i < l.length); i++) {
    for (const l of lists) {
      const img = l[i];
      if (img && out.length < limit) out.push(img);
    }
  }
  return out;
}

/** The copies made of a real image when a part asks for more images than the datasets hold. */
const VARIANTS = [
  { name: "mirrored", apply: (s: Sharp) => s.flop() },
  { name: "flipped", apply: (s: Sharp) => s.flip() },
  { name: "rotated180", apply: (s: Sharp) => s.rotate(180) },
] as const;

/**
 * `count` gallery images: every real one of the datasets (as {@link realImages} orders them), then, when
 * more are asked for, copies of them mirrored, flipped upside down and turned 180 degrees, in that order
 * (JPEG quality 92, written under `dir`). A copy keeps its original's product, defect type and image type,
 * and joins its near-duplicate group (the original's path when it had none), so cross-validation keeps the
 * two in one fold. Real pixels and real labels, in a gallery up to 4 times the datasets' size; the copies
 * are easier neighbours of each other than new photos would be, which flatters retrieval scores (not timings).
 * @returns the images, real ones first, and how many of them are copies.
 * @throws Error when `count` is over 4 times the real gallery.
 */
export async function paddedGallery(
  datasetsDir: string,
  count: number,
  dir: string,
): Promise<{ images: DatasetImage[]; copies: number }> {
  const real = await realImages(datasetsDir, "gallery", count);
  if (real.length >= count) return { images: real, copies: 0 };
  if (count > real.length * (VARIANTS.length + 1))
    throw new Error(`${count} images asked for; the datasets' ${real.length} and 3 copies of each are fewer`);
  await mkdir(dir, { recursive: true });
  const out = [...real];
  for (const v of VARIANTS) {
    const copies = real.slice(0, count - out.length).map((img, i) => ({ img, i }));
    // Four at a time: sharp runs each on libuv's pool, which has four threads.
    for (let k = 0; k < copies.length; k += 4) {
      const made = await Promise.all(
        copies.slice(k, k + 4).map(async ({ img, i }) => {
          const file = path.join(dir, `${v.name}-${i}.jpg`);
          await v.apply(sharp(img.path)).jpeg({ quality: 92 }).toFile(file);
          return {
            ...img,
            path: file,
            relPath: `${path.dirname(img.relPath)}/${v.name}-${path.basename(img.relPath)}`,
            groupId: img.groupId ?? img.relPath,
          };
        }),
      );
      out.push(...made);
    }
    if (out.length >= count) break;
  }
  return { images: out, copies: out.length - real.length };
}

/** Milliseconds elapsed since `t0` (a `performance.now()` value). */
export const since = (t0: number) => performance.now() - t0;

/**
 * Ingests `count` real gallery images of `datasetsDir` into `app` and rebuilds both V2 indexes.
 * @throws Error when the rebuild fails.
 */
export async function ingestAndRebuild(app: App, datasetsDir: string, count: number): Promise<void> {
  await app.ingest.ingest(await realImages(datasetsDir, "gallery", count));
  const queued = await app.jobs.start({
    targets: IMAGE_TYPES.map((t) => ({ version: "v2", imageType: t })),
    trigger: "admin",
  });
  const task = await app.jobs.untilDone(queued.id);
  if (task.status !== "succeeded") throw new Error(`rebuild failed: ${task.error}`);
}
