import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { loadConfig } from "../../src/config/config.js";
import { MODEL_PRESETS, type ModelPresetName } from "../../src/config/model-presets.js";
import { type Distribution, distribution } from "../../src/eval/stats.js";
import type { GalleryEntry } from "../../src/index/gallery-entry.js";
import type { HnswParams } from "../../src/index/hnsw.params.js";
import { createIndexStore } from "../../src/index/index.store.js";
import { buildVectorIndex, type VectorIndex, vectorIndexFromBuffer } from "../../src/index/vector-index.js";
import { type BenchContext, since } from "../context.js";
import { collectGarbage, formatBytes, settledRss } from "../memory.js";
import { clusterSpace } from "../synthetic.js";

/** Largest file `fs.readFile` reads (index.store.ts loads faiss_index.bin with it): 2 GiB - 1. */
export const READ_FILE_LIMIT = 2 ** 31 - 1;

/** Search-only figures of one index type at one gallery size. */
export interface SearchResult {
  factory: string;
  /** HNSW parameters in force (HNSW factories only). */
  efConstruction?: number;
  efSearch?: number;
  size: number;
  dimension: number;
  /** Why it was not measured (memory, projected build time, file limits). */
  notRun?: string;
  buildSeconds?: number;
  /** Resident memory added by building the index (bytes, RSS delta after GC; includes allocator slack). */
  indexRssBytes?: number;
  /** Index bytes per vector: the serialised size (FAISS's in-memory layout) when persisted, else RSS-based. */
  bytesPerVector?: number;
  /** faiss_index.bin size (bytes), when it could be persisted. */
  fileBytes?: number;
  /** index store `load` (read, sha256 checks, metadata parse, FAISS deserialise), seconds. */
  loadSeconds?: number;
  /** Why persisting or loading was not measured. */
  persistNote?: string;
  /** `VectorIndex.search` for top-10, one query at a time (ms). */
  latencyMs?: Distribution;
  /** Mean share of the exact top-10 found. */
  recallAt10?: number;
}

/** Rough index bytes per vector of a factory string (for the memory check before building). */
export function estimateBytesPerVector(factory: string, dimension: number): number {
  const f = factory.toUpperCase();
  let bytes = 4 * dimension;
  if (f.includes("SQ8")) bytes = dimension;
  else if (f.includes("SQ4")) bytes = dimension / 2;
  else if (f.includes("SQFP16")) bytes = 2 * dimension;
  const pq = /PQ(\d+)/.exec(f);
  if (pq) bytes = Number(pq[1]);
  const hnsw = /HNSW(\d+)/.exec(f);
  if (hnsw) bytes += Number(hnsw[1]) * 2 * 4 * 1.1;
  if (f.includes("IVF")) bytes += 8;
  return bytes;
}

function syntheticEntries(count: number): GalleryEntry[] {
  return Array.from({ length: count }, (_, i) => ({
    imageId: i + 1,
    imageType: "defect" as const,
    productCode: "synthetic",
    productName: "Synthetic",
    defectCode: `cluster_${i % 100}`,
    defectName: null,
    filePath: null,
    storageUrl: null,
    contentSha256: null,
  }));
}

/** Top-10 latency of `index` for each query, and the labels found. */
function timeQueries(index: VectorIndex, queries: Float32Array, dimension: number) {
  const nq = queries.length / dimension;
  const query = (q: number) => queries.subarray(q * dimension, (q + 1) * dimension);
  // Warm-up: first searches touch cold pages and start FAISS's OpenMP threads.
  for (let q = 0; q < Math.min(10, nq); q++) index.search(query(q), 10);
  const latencies: number[] = [];
  const labels: number[][] = [];
  for (let q = 0; q < nq; q++) {
    const t = performance.now();
    const r = index.search(query(q), 10);
    latencies.push(since(t));
    labels.push(r.labels);
  }
  return { latencies, labels };
}

function recallAt10(truth: readonly number[][], labels: readonly number[][]): number {
  return (
    truth.reduce((s, t, q) => s + t.filter((l) => labels[q]?.includes(l)).length / Math.max(1, t.length), 0) /
    Math.max(1, truth.length)
  );
}

/**
 * Builds one index with the service's `buildVectorIndex` (HNSW with the service's default
 * efConstruction), persists and reloads it with the service's index store, then times top-10 searches
 * and their recall against `exact` (for HNSW once per efSearch, applied at load as the service does).
 */
async function measure(
  factory: string,
  vectors: Float32Array,
  queries: Float32Array,
  dimension: number,
  exact: number[][] | undefined,
  hnsw: HnswParams,
  efSearches: readonly number[],
): Promise<{ results: SearchResult[]; labels: number[][] }> {
  const size = vectors.length / dimension;
  const isHnsw = /HNSW/i.test(factory);
  const rss0 = settledRss();
  const t0 = performance.now();
  let index: VectorIndex | undefined = buildVectorIndex({ dimension, factory, vectors, hnsw });
  const buildSeconds = since(t0) / 1000;
  const indexRssBytes = settledRss() - rss0;
  const base: SearchResult = {
    factory,
    size,
    dimension,
    buildSeconds,
    indexRssBytes,
    bytesPerVector: indexRssBytes / size,
    ...(isHnsw ? { efConstruction: hnsw.efConstruction } : {}),
  };
  const expectedFile = estimateBytesPerVector(factory, dimension) * size;
  if (expectedFile > READ_FILE_LIMIT) {
    base.persistNote = `not persisted: the file would be ~${formatBytes(expectedFile)}; index.store.ts serialises with toBuffer() and loads with fs.readFile (2 GiB max), so the service cannot persist or load it`;
  } else {
    const dir = await mkdtemp(path.join(os.tmpdir(), "defect-lens-bench-idx-"));
    try {
      const store = createIndexStore({ root: dir });
      await store.save({
        index,
        entries: syntheticEntries(size),
        manifest: {
          formatVersion: 1,
          matcherVersion: "v2",
          imageType: "defect",
          modelId: "synthetic",
          dimension,
          count: size,
          factory,
          galleryFingerprint: null,
          builtAt: new Date().toISOString(),
        },
      });
      base.fileBytes = (await stat(path.join(store.dirOf("v2", "defect"), "faiss_index.bin"))).size;
      base.bytesPerVector = base.fileBytes / size;
      collectGarbage();
      const t1 = performance.now();
      const loaded = await store.load("v2", "defect", hnsw);
      base.loadSeconds = since(t1) / 1000;
      if (loaded.index.count !== size) throw new Error("loaded index has the wrong size");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const results: SearchResult[] = [];
  let firstLabels: number[][] = [];
  const serialised = isHnsw ? index.toBuffer() : undefined;
  for (const efSearch of isHnsw ? efSearches : [undefined]) {
    const searchable =
      serialised && efSearch !== undefined ? vectorIndexFromBuffer(serialised, { efSearch }) : index;
    const { latencies, labels } = timeQueries(searchable, queries, dimension);
    if (firstLabels.length === 0) firstLabels = labels;
    results.push({
      ...base,
      ...(efSearch !== undefined ? { efSearch } : {}),
      latencyMs: distribution(latencies),
      recallAt10: recallAt10(exact ?? labels, labels),
    });
  }
  index = undefined;
  return { results, labels: firstLabels };
}

/**
 * Search only, given an embedding: synthetic clustered unit vectors of the model's dimension at each
 * gallery size, every index type built with the service's `buildVectorIndex`, top-10 latency of
 * `VectorIndex.search`, recall@10 against exact (Flat) search, build time, RSS, file size, load time.
 */
export async function benchSearch(ctx: BenchContext): Promise<SearchResult[]> {
  const { opts } = ctx;
  const dimension = MODEL_PRESETS[opts.model as ModelPresetName].dimension;
  const factories = ["Flat", ...opts.factories.filter((f) => f !== "Flat")];
  // The service's defaults (INDEX_EF_CONSTRUCTION, INDEX_EF_SEARCH) unless --ef-search says otherwise.
  const service = loadConfig({}).index.hnsw;
  const efSearches =
    opts.efSearch.length > 0
      ? opts.efSearch
      : [...new Set([16, service.efSearch, 2 * service.efSearch])].sort((a, b) => a - b);
  const results: SearchResult[] = [];
  const space = clusterSpace({ dimension, clusters: 1000 });
  const queries = space.sample(opts.queries, 7);
  for (const size of [...opts.sizes].sort((a, b) => a - b)) {
    const needVectors = size * dimension * 4;
    const free = os.freemem();
    const flatNeed = needVectors + estimateBytesPerVector("Flat", dimension) * size;
    if (flatNeed > free * 0.9) {
      for (const factory of factories)
        results.push({
          factory,
          size,
          dimension,
          notRun: `not run: needs ~${formatBytes(flatNeed)} (vectors + exact index) but ${formatBytes(free)} is free`,
        });
      continue;
    }
    ctx.log(`search: generating ${size} x ${dimension} synthetic vectors`);
    let vectors: Float32Array | undefined = space.sample(size, size);
    let exact: number[][] | undefined;
    for (const factory of factories) {
      const notRun = skipReason(ctx, results, factory, size, dimension, needVectors);
      if (notRun) {
        results.push({ factory, size, dimension, notRun });
        continue;
      }
      ctx.log(`search: ${factory} at ${size}`);
      try {
        const m = await measure(factory, vectors, queries, dimension, exact, service, efSearches);
        if (factory === "Flat") exact = m.labels;
        results.push(...m.results);
      } catch (e) {
        const message = (e as Error).message;
        const hint = /Invalid array length/.test(message)
          ? ` (buildVectorIndex trains with index.train(Array.from(vectors)): ${size} x ${dimension} = ${(size * dimension).toExponential(2)} numbers is more than a V8 array holds)`
          : "";
        results.push({ factory, size, dimension, notRun: `failed: ${message}${hint}` });
      }
      collectGarbage();
    }
    vectors = undefined;
    collectGarbage();
  }
  return results;
}

/** Why an index should not be built: projected build time over budget, or not enough memory. */
function skipReason(
  ctx: BenchContext,
  done: readonly SearchResult[],
  factory: string,
  size: number,
  dimension: number,
  vectorBytes: number,
): string | undefined {
  const indexBytes = estimateBytesPerVector(factory, dimension) * size;
  // Flat/SQ adds copy each chunk to a JS array; training (SQ, IVF, PQ) copies all vectors at once.
  const trains = /SQ|IVF|PQ/i.test(factory) && !/^HNSW\d+,Flat$/i.test(factory);
  const jsCopy = trains ? size * dimension * 8 * 2 : 0;
  const need = indexBytes * 2 + jsCopy;
  const free = os.freemem();
  if (need > free * 0.9) {
    return `not run: needs ~${formatBytes(need + vectorBytes)} (index, its serialised copy${trains ? ", JS copy for training" : ""}, vectors) but ${formatBytes(free)} is free`;
  }
  const prev = [...done].reverse().find((r) => r.factory === factory && r.buildSeconds !== undefined);
  if (prev?.buildSeconds !== undefined) {
    const hnsw = /HNSW/i.test(factory);
    const scale = (size / prev.size) * (hnsw ? Math.log(size) / Math.log(prev.size) : 1);
    const projected = prev.buildSeconds * scale;
    if (projected > ctx.opts.maxBuildSeconds) {
      return `not run: projected build ${projected.toFixed(0)} s (from ${prev.buildSeconds.toFixed(0)} s at ${prev.size}) > --max-build-seconds ${ctx.opts.maxBuildSeconds}`;
    }
  }
  return undefined;
}
