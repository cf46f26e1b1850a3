import { existsSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { loadConfig } from "../../src/config/config.js";
import { isExactFactory } from "../../src/index/factory.js";
import { createFaissWorkerBackend } from "../../src/index/faiss/faiss-worker.backend.js";
import type { GalleryColumns } from "../../src/index/gallery-columns.js";
import { createIndexStore } from "../../src/index/index.store.js";
import type { VectorIndex } from "../../src/index/vector-index.js";
import { type Distribution, distribution } from "../../tools/shared/stats.js";
import { type BenchContext, since } from "../context.js";
import { collectGarbage, formatBytes, settledRss } from "../memory.js";
import { type RealEmbeddings, realMixture } from "../real-mixture.js";

/** Search-only figures of one index type at one gallery size (one row per efSearch for HNSW). */
export interface SearchResult {
  factory: string;
  size: number;
  dimension: number;
  /** Why it was not measured (memory, projected build time). */
  notRun?: string;
  efConstruction?: number;
  efSearch?: number;
  /** FAISS train + add in the worker (s). */
  buildSeconds?: number;
  /** The build's own recall@10 check (gallery sample left out, against exact search), as the service stores it. */
  selfRecallAt10?: number;
  /** Longest main-thread event-loop delay while the index was built (ms). */
  buildEventLoopMaxMs?: number;
  /** Process RSS added by the build (bytes, after GC; the worker's memory included). */
  rssBytes?: number;
  /** faiss_index.bin (bytes). */
  fileBytes?: number;
  /** faiss_index.bin bytes per vector (FAISS's in-memory layout, give or take a few headers). */
  bytesPerVector?: number;
  /** vectors.f32 (full-precision vectors on disk for exact re-ranking), bytes; absent when not re-ranked. */
  rerankFileBytes?: number;
  /** Index store `save` (FAISS write in the worker, metadata, sha256), seconds. */
  saveSeconds?: number;
  /** Index store `load` (FAISS read in the worker, columnar metadata), seconds. */
  loadSeconds?: number;
  /** `VectorIndex.search` top-10, one query at a time (ms). */
  latencyMs?: Distribution;
  /** The same queries with 16 in flight (the worker batches them), per query (ms). */
  concurrentLatencyMs?: Distribution;
  /** Queries per second with 16 in flight. */
  concurrentQps?: number;
  /** Mean share of the exact top-10 (Flat on the full vectors) found, held-out queries. */
  recallAt10?: number;
}

/** Rough index bytes per vector of a factory string (for the memory check before building). */
export function estimateBytesPerVector(factory: string, dimension: number): number {
  const f = factory.toUpperCase();
  const pca = /PCAR?(\d+)/.exec(f);
  const d = pca ? Number(pca[1]) : dimension;
  let bytes = 4 * d;
  if (f.includes("SQ8")) bytes = d;
  else if (f.includes("SQ4")) bytes = d / 2;
  else if (f.includes("SQFP16")) bytes = 2 * d;
  const pq = /PQ(\d+)/.exec(f);
  if (pq) bytes = Number(pq[1]);
  const hnsw = /HNSW(\d+)/.exec(f);
  if (hnsw) bytes += Number(hnsw[1]) * 2 * 4 * 1.1;
  if (f.includes("IVF")) bytes += 8;
  return bytes;
}

/** Columns of an all-synthetic gallery (what the store persists beside the index). */
function syntheticColumns(count: number): GalleryColumns {
  return {
    count,
    imageType: "defect",
    imageId: new Int32Array(count).fill(-1),
    products: [{ code: "synthetic", name: null }],
    productIndex: new Uint32Array(count),
    defects: [{ code: "synthetic", name: null }],
    defectIndex: new Uint32Array(count),
    filePath: new Array<null>(count).fill(null),
    storageUrl: new Array<null>(count).fill(null),
    contentSha256: new Array<null>(count).fill(null),
  };
}

const K = 10;
const IN_FLIGHT = 16;

/** Top-10 of every query one at a time, then with {@link IN_FLIGHT} in flight. */
async function timeQueries(index: VectorIndex, queries: Float32Array, dimension: number) {
  const nq = queries.length / dimension;
  const query = (q: number) => queries.slice(q * dimension, (q + 1) * dimension);
  // Warm-up: first searches touch cold pages.
  for (let q = 0; q < Math.min(10, nq); q++) await index.search(query(q), K);
  const latencies: number[] = [];
  const labels: Int32Array[] = [];
  for (let q = 0; q < nq; q++) {
    const t = performance.now();
    const r = await index.search(query(q), K);
    latencies.push(since(t));
    labels.push(r.labels);
  }
  const concurrent: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      for (let q = next++; q < nq; q = next++) {
        const t = performance.now();
        await index.search(query(q), K);
        concurrent.push(since(t));
      }
    }),
  );
  const qps = nq / (since(t0) / 1000);
  return { latencies, labels, concurrent, qps };
}

function recallAt10(truth: readonly Int32Array[], labels: readonly Int32Array[]): number {
  let sum = 0;
  truth.forEach((t, q) => {
    const found = new Set(labels[q]);
    sum += t.filter((l) => found.has(l)).length / Math.max(1, t.length);
  });
  return sum / Math.max(1, truth.length);
}

/**
 * Builds one index in the FAISS worker as a rebuild does (recall self-check included), persists and
 * reloads it with the service's index store, then times top-10 searches and their recall against
 * `truth` (for HNSW once per efSearch, set on the served index as INDEX_EF_SEARCH would).
 */
async function measure(
  ctx: BenchContext,
  real: RealEmbeddings,
  factory: string,
  size: number,
  queries: Float32Array,
  truth: Int32Array[] | undefined,
  efSearches: readonly number[],
): Promise<{ results: SearchResult[]; labels: Int32Array[] }> {
  const { dimension } = real;
  const config = loadConfig({}).index;
  const isHnsw = /HNSW/i.test(factory);
  const backend = createFaissWorkerBackend({
    threads: { build: config.buildThreads, search: config.threads },
  });
  const rss0 = settledRss();
  const lag = monitorEventLoopDelay({ resolution: 1 });
  const vectors = realMixture(real, size, size).vectors;
  lag.enable();
  const t0 = performance.now();
  const built = await backend.build({
    dimension,
    factory,
    vectors,
    params: { efConstruction: config.efConstruction, efSearch: config.efSearch },
    recall: isExactFactory(factory) ? null : { queries: config.recallQueries, seed: size },
  });
  const buildSeconds = built.buildMs / 1000;
  ctx.log(`search: ${factory} at ${size}: built in ${(since(t0) / 1000).toFixed(1)} s`);
  lag.disable();
  const base: SearchResult = {
    factory,
    size,
    dimension,
    buildSeconds,
    buildEventLoopMaxMs: lag.max / 1e6,
    rssBytes: settledRss() - rss0,
    ...(built.recall ? { selfRecallAt10: built.recall.recallAt10 } : {}),
    ...(isHnsw ? { efConstruction: built.index.params.efConstruction } : {}),
  };
  const dir = await mkdtemp(path.join(os.tmpdir(), "defect-lens-bench-idx-"));
  const store = createIndexStore({ root: dir });
  let index: VectorIndex = built.index;
  try {
    const t1 = performance.now();
    await store.save({
      index: built.index,
      columns: syntheticColumns(size),
      manifest: {
        formatVersion: 2,
        matcherVersion: "v2",
        imageType: "defect",
        modelId: "synthetic",
        dimension,
        count: size,
        configuredFactory: factory,
        factory,
        params: built.index.params,
        recall: null,
        buildMs: built.buildMs,
        galleryFingerprint: null,
        builtAt: new Date().toISOString(),
      },
    });
    base.saveSeconds = since(t1) / 1000;
    base.fileBytes = (await stat(path.join(store.dirOf("v2", "defect"), "faiss_index.bin"))).size;
    base.bytesPerVector = base.fileBytes / size;
    const vectorsFile = path.join(store.dirOf("v2", "defect"), "vectors.f32");
    if (existsSync(vectorsFile)) base.rerankFileBytes = (await stat(vectorsFile)).size;
    await built.index.close();
    collectGarbage();
    const t2 = performance.now();
    const loaded = await store.load("v2", "defect", backend, { efSearch: config.efSearch });
    base.loadSeconds = since(t2) / 1000;
    index = loaded.index;
    if (index.count !== size) throw new Error("loaded index has the wrong size");
    const results: SearchResult[] = [];
    let firstLabels: Int32Array[] = [];
    for (const efSearch of isHnsw ? efSearches : [undefined]) {
      if (efSearch !== undefined) await index.setParams({ efSearch });
      const m = await timeQueries(index, queries, dimension);
      if (firstLabels.length === 0) firstLabels = m.labels;
      results.push({
        ...base,
        ...(efSearch !== undefined ? { efSearch } : {}),
        latencyMs: distribution(m.latencies),
        concurrentLatencyMs: distribution(m.concurrent),
        concurrentQps: m.qps,
        recallAt10: recallAt10(truth ?? m.labels, m.labels),
      });
    }
    return { results, labels: firstLabels };
  } finally {
    await index.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Search only, given embeddings: real-mixture vectors (see `real-mixture.ts`) of the model's dimension at
 * each gallery size, every index type built by the service's FAISS worker backend, persisted and loaded
 * by its index store; top-10 latency one at a time and 16 in flight, recall@10 of held-out queries
 * against exact (Flat) search, build time and event-loop delay, file size, load time.
 */
export async function benchSearch(ctx: BenchContext): Promise<SearchResult[]> {
  const { opts } = ctx;
  const real = await ctx.real();
  const { dimension } = real;
  const factories = ["Flat", ...opts.factories.filter((f) => f !== "Flat")];
  const service = loadConfig({}).index;
  const efSearches =
    opts.efSearch.length > 0
      ? opts.efSearch
      : [...new Set([32, service.efSearch, 2 * service.efSearch])].sort((a, b) => a - b);
  const results: SearchResult[] = [];
  // Held out: another seed than any gallery, so no query is in the index.
  const queries = realMixture(real, opts.queries, 7).vectors;
  for (const size of [...opts.sizes].sort((a, b) => a - b)) {
    let truth: Int32Array[] | undefined;
    for (const factory of factories) {
      const notRun = skipReason(ctx, results, factory, size, dimension);
      if (notRun) {
        results.push({ factory, size, dimension, notRun });
        continue;
      }
      ctx.log(`search: ${factory} at ${size}`);
      try {
        const m = await measure(ctx, real, factory, size, queries, truth, efSearches);
        if (factory === "Flat") truth = m.labels;
        results.push(...m.results);
      } catch (e) {
        results.push({ factory, size, dimension, notRun: `failed: ${(e as Error).message}` });
      }
      collectGarbage();
    }
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
): string | undefined {
  // The vectors (held by the worker during the build), the index, and its file in the page cache.
  const need = size * dimension * 4 + estimateBytesPerVector(factory, dimension) * size * 2;
  const free = os.freemem();
  if (need > free * 0.9) {
    return `not run: needs ~${formatBytes(need)} (vectors, index, its file) but ${formatBytes(free)} is free`;
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
