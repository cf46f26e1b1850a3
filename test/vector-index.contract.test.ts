import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExactBackend } from "../src/index/exact.backend.js";
import { createFaissWorkerBackend, killFaissWorkerForTest } from "../src/index/faiss/faiss-worker.backend.js";
import {
  type BuildInput,
  IndexUnavailableError,
  type VectorIndex,
  type VectorIndexBackend,
} from "../src/index/vector-index.js";
import { scratchDir, testLogger } from "./support/services.js";
import { unitVectors as sharedUnitVectors } from "./support/vectors.js";

const DIM = 32;

const unitVectors = (n: number, dim = DIM, seed = 1) => sharedUnitVectors(n, dim, seed);

/** An exact (Flat) index of `DIM`-d `vectors` built by `backend`. */
const buildFlat = (backend: VectorIndexBackend, vectors: Float32Array, recall: BuildInput["recall"] = null) =>
  backend.build({ dimension: DIM, factory: "Flat", vectors, params: {}, recall });

const row = (v: Float32Array, i: number, dim = DIM) => v.slice(i * dim, (i + 1) * dim);

/** Brute-force top-k by inner product: the definition every backend must meet. */
function truth(vectors: Float32Array, query: Float32Array, k: number, ids?: number[]) {
  const n = vectors.length / DIM;
  const scored = (ids ?? Array.from({ length: n }, (_, i) => i)).map((i) => {
    let s = 0;
    for (let j = 0; j < DIM; j++) s += (vectors[i * DIM + j] as number) * (query[j] as number);
    return { i, s };
  });
  return scored.sort((a, b) => b.s - a.s).slice(0, k);
}

const backends: [string, () => VectorIndexBackend][] = [
  ["exact (reference)", () => createExactBackend()],
  ["FAISS worker", () => createFaissWorkerBackend({ logger: testLogger })],
];

describe.each(backends)("vector index backend contract: %s", (_name, makeBackend) => {
  const backend = makeBackend();
  const vectors = unitVectors(500);
  let index: VectorIndex;
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  beforeAll(async () => {
    scratch = await scratchDir();
    ({ index } = await buildFlat(backend, vectors.slice()));
  });
  afterAll(async () => {
    await index.close();
    await scratch.remove();
  });

  it("finds the exact top-k by cosine similarity, each vector its own best match", async () => {
    const q = row(vectors, 7);
    const hits = await index.search(q, 5);
    const want = truth(vectors, q, 5);
    expect(Array.from(hits.labels)).toEqual(want.map((w) => w.i));
    expect(hits.scores[0]).toBeCloseTo(1, 5);
    hits.scores.forEach((s, i) => {
      expect(s).toBeCloseTo(want[i]?.s as number, 5);
    });
    expect(index.count).toBe(500);
    expect(index.dimension).toBe(DIM);
  });

  it("answers concurrent searches each with its own results", async () => {
    const queries = Array.from({ length: 40 }, (_, i) => row(vectors, i * 3));
    const all = await Promise.all(queries.map((q, i) => index.search(q, 1 + (i % 7))));
    all.forEach((hits, i) => {
      expect(hits.labels).toHaveLength(1 + (i % 7));
      expect(hits.labels[0]).toBe(i * 3);
    });
  });

  it("clamps k to the gallery size", async () => {
    const { index: small } = await buildFlat(backend, unitVectors(3));
    expect((await small.search(row(vectors, 0), 10)).labels).toHaveLength(3);
    await small.close();
  });

  it("searches only a subset of labels, exactly", async () => {
    const ids = [3, 50, 51, 99, 200, 499];
    const q = row(vectors, 50);
    const hits = await index.searchSubset(q, 4, Int32Array.from(ids));
    expect(Array.from(hits.labels)).toEqual(truth(vectors, q, 4, ids).map((w) => w.i));
    expect((await index.searchSubset(q, 4, new Int32Array(0))).labels).toHaveLength(0);
  });

  it("saves and loads an index that gives the same answers", async () => {
    const file = path.join(scratch.dir, `${backend.name}.bin`);
    await index.save(file);
    const loaded = await backend.load(file, { factory: "Flat", params: {} });
    const q = row(vectors, 11);
    expect(Array.from((await loaded.search(q, 8)).labels)).toEqual(
      Array.from((await index.search(q, 8)).labels),
    );
    await loaded.close();
  });

  it("measures its recall@10 on gallery vectors left out of their own results", async () => {
    const { index: checked, recall } = await buildFlat(backend, vectors.slice(), { queries: 50, seed: 1 });
    expect(recall?.queries).toBe(50);
    expect(recall?.recallAt10).toBe(1);
    await checked.close();
  });

  it("refuses searches once closed", async () => {
    const { index: gone } = await buildFlat(backend, unitVectors(10));
    await gone.close();
    await expect(gone.search(row(vectors, 0), 1)).rejects.toThrow();
    expect(gone.ready).toBe(false);
  });
});

describe("FAISS worker backend", () => {
  const backend = createFaissWorkerBackend({ logger: testLogger });
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  beforeAll(async () => {
    scratch = await scratchDir();
  });
  afterAll(() => scratch.remove());

  it("builds HNSW with efConstruction before the first add, applies efSearch at load, and reports both", async () => {
    const dim = 64;
    const vectors = unitVectors(4000, dim, 7);
    const { index, recall } = await backend.build({
      dimension: dim,
      factory: "HNSW16,Flat",
      vectors,
      params: { efConstruction: 20, efSearch: 8 },
      recall: { queries: 100, seed: 1 },
    });
    expect(index.params).toMatchObject({ efConstruction: 20, efSearch: 8 });
    const file = path.join(scratch.dir, "hnsw.bin");
    await index.save(file);
    const wide = await backend.load(file, { factory: "HNSW16,Flat", params: { efSearch: 256 } });
    expect(wide.params.efSearch).toBe(256);
    // The recall check reflects efSearch: a wider search finds more of the exact top-10.
    const { recall: wideRecall } = await backend
      .build({
        dimension: dim,
        factory: "HNSW16,Flat",
        vectors: unitVectors(4000, dim, 7),
        params: { efConstruction: 20, efSearch: 256 },
        recall: { queries: 100, seed: 1 },
      })
      .then(async (b) => {
        await b.index.close();
        return b;
      });
    expect(recall?.recallAt10).toBeLessThan(wideRecall?.recallAt10 as number);
    expect(wideRecall?.recallAt10).toBeGreaterThan(0.9);
    await index.close();
    await wide.close();
  });

  it("builds a gallery larger than one transfer chunk (65,536 rows) with labels in insertion order", async () => {
    const dim = 8;
    const vectors = unitVectors(70_000, dim, 11);
    const probe = vectors.slice(68_000 * dim, 68_001 * dim);
    // IVF with every list probed is exact, so the recall check (across both chunks) must find 1.0.
    const { index, recall } = await backend.build({
      dimension: dim,
      factory: "IVF16,Flat",
      vectors,
      params: { nprobe: 16 },
      recall: { queries: 50, seed: 3 },
    });
    expect(index.count).toBe(70_000);
    expect((await index.search(probe, 1)).labels[0]).toBe(68_000);
    expect(recall?.recallAt10).toBe(1);
    await index.close();
  });

  it("refuses a bad factory string with FAISS's message, and keeps working", async () => {
    await expect(
      backend.build({
        dimension: DIM,
        factory: "NoSuchIndex42",
        vectors: unitVectors(10),
        params: {},
        recall: null,
      }),
    ).rejects.toThrow(/NoSuchIndex42|could not parse|factory/i);
    const { index } = await buildFlat(backend, unitVectors(10));
    expect(index.count).toBe(10);
    await index.close();
  });

  it("recovers after its worker dies: searches fail fast with IndexUnavailableError, then the index is reloaded", async () => {
    const vectors = unitVectors(300);
    const { index } = await buildFlat(backend, vectors.slice());
    const file = path.join(scratch.dir, "recover.bin");
    await index.save(file);
    index.setSourceFile(file);
    await killFaissWorkerForTest(index);
    await expect(index.search(row(vectors, 5), 3)).rejects.toBeInstanceOf(IndexUnavailableError);
    expect(index.ready).toBe(false);
    const deadline = Date.now() + 20_000;
    while (!index.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(index.ready).toBe(true);
    expect((await index.search(row(vectors, 5), 3)).labels[0]).toBe(5);
    await index.close();
  });

  it("keeps the event loop responsive and another index answering while a large index builds", async () => {
    const dim = 128;
    const small = await buildFlat(backend, unitVectors(1000));
    const probe = row(unitVectors(1000), 9);
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const t0 = performance.now();
    const building = backend.build({
      dimension: dim,
      factory: "HNSW32,Flat",
      vectors: unitVectors(15_000, dim, 3),
      params: { efConstruction: 80, efSearch: 64 },
      recall: { queries: 100, seed: 1 },
    });
    let searches = 0;
    let done = false;
    void building.finally(() => {
      done = true;
    });
    while (!done) {
      const hits = await small.index.search(probe, 5);
      expect(hits.labels[0]).toBe(9);
      searches++;
      await new Promise((r) => setTimeout(r, 2));
    }
    const built = await building;
    delay.disable();
    const buildMs = performance.now() - t0;
    expect(buildMs).toBeGreaterThan(1000);
    expect(searches).toBeGreaterThan(50);
    // A synchronous FAISS build on this thread would have blocked it for the whole build (seconds).
    expect(delay.max / 1e6).toBeLessThan(200);
    expect(built.recall?.recallAt10).toBeGreaterThan(0.5);
    await built.index.close();
    await small.index.close();
  });
});
