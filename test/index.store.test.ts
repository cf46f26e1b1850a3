import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readHnswParams } from "../src/index/hnsw.params.js";
import { createIndexStore } from "../src/index/index.store.js";
import { buildVectorIndex, vectorIndexFromBuffer } from "../src/index/vector-index.js";
import { scratchDir } from "./support/services.js";

const DIM = 8;
function unitVectors(n: number, seed = 1): Float32Array {
  let s = seed;
  // Park-Miller LCG: a fixed seed gives the same vectors on every run.
  const rand = () => {
    s = (s * 16807) % 2147483647;
    return (s / 2147483647) * 2 - 1;
  };
  const out = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < DIM; j++) {
      const v = rand();
      out[i * DIM + j] = v;
      norm += v * v;
    }
    for (let j = 0; j < DIM; j++) out[i * DIM + j] = (out[i * DIM + j] as number) / Math.sqrt(norm);
  }
  return out;
}
const entry = (i: number) => ({
  imageId: i,
  imageType: "defect" as const,
  productCode: "P",
  productName: null,
  defectCode: `d${i}`,
  defectName: null,
  filePath: null,
  storageUrl: null,
  contentSha256: null,
});
const manifest = {
  formatVersion: 1 as const,
  matcherVersion: "v2" as const,
  imageType: "defect" as const,
  modelId: "m@1",
  dimension: DIM,
  factory: "Flat",
  galleryFingerprint: "count=50",
  builtAt: new Date().toISOString(),
};

describe("FAISS index and its store", () => {
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  beforeEach(async () => {
    scratch = await scratchDir();
  });
  afterEach(() => scratch.remove());

  it("finds each vector as its own nearest neighbour with cosine similarity 1", () => {
    const vectors = unitVectors(50);
    const index = buildVectorIndex({ dimension: DIM, factory: "Flat", vectors });
    const r = index.search(vectors.subarray(7 * DIM, 8 * DIM), 3);
    expect(r.labels[0]).toBe(7);
    expect(r.scores[0]).toBeCloseTo(1, 5);
    expect(r.scores[1]).toBeLessThan(r.scores[0] as number);
  });

  it("returns an empty result from an empty index", () => {
    const index = buildVectorIndex({ dimension: DIM, factory: "Flat", vectors: new Float32Array(0) });
    expect(index.search(unitVectors(1), 5)).toEqual({ labels: [], scores: [] });
  });

  it("persists and loads an index with the same answers, leaving no temporary folder", async () => {
    const store = createIndexStore({ root: scratch.dir });
    const vectors = unitVectors(50);
    const index = buildVectorIndex({ dimension: DIM, factory: "Flat", vectors });
    const saved = await store.save({
      index,
      entries: Array.from({ length: 50 }, (_, i) => entry(i)),
      manifest: { ...manifest, count: 50 },
    });
    expect(saved.indexSha256).toMatch(/^[0-9a-f]{64}$/);
    const loaded = await store.load("v2", "defect");
    const q = vectors.subarray(3 * DIM, 4 * DIM);
    expect(loaded.index.search(q, 5)).toEqual(index.search(q, 5));
    expect(loaded.entries[3]?.defectCode).toBe("d3");
    expect(await readdir(path.join(scratch.dir, "v2"))).toEqual(["defect"]);
    expect((await readdir(store.dirOf("v2", "defect"))).sort()).toEqual([
      "faiss_index.bin",
      "manifest.json",
      "metadata.json",
    ]);
  });

  it("refuses to load an index whose file no longer matches its manifest checksum", async () => {
    const store = createIndexStore({ root: scratch.dir });
    const index = buildVectorIndex({ dimension: DIM, factory: "Flat", vectors: unitVectors(10) });
    await store.save({
      index,
      entries: Array.from({ length: 10 }, (_, i) => entry(i)),
      manifest: { ...manifest, count: 10 },
    });
    const meta = path.join(store.dirOf("v2", "defect"), "metadata.json");
    await writeFile(meta, (await readFile(meta, "utf8")).replace('"d1"', '"tampered"'));
    await expect(store.load("v2", "defect")).rejects.toThrow(/checksum/);
  });

  it("persists an HNSW index and applies the configured efSearch when loading it", async () => {
    const store = createIndexStore({ root: scratch.dir });
    const index = buildVectorIndex({
      dimension: DIM,
      factory: "HNSW32,Flat",
      vectors: unitVectors(100),
      hnsw: { efSearch: 16 },
    });
    await store.save({
      index,
      entries: Array.from({ length: 100 }, (_, i) => entry(i)),
      manifest: { ...manifest, factory: "HNSW32,Flat", count: 100 },
    });
    const loaded = await store.load("v2", "defect", { efSearch: 99 });
    expect(readHnswParams(loaded.index.toBuffer())?.efSearch).toBe(99);
    expect(loaded.index.count).toBe(100);
  });

  it("replaces a previous index atomically", async () => {
    const store = createIndexStore({ root: scratch.dir });
    for (const n of [10, 20]) {
      const index = buildVectorIndex({ dimension: DIM, factory: "Flat", vectors: unitVectors(n, n) });
      await store.save({
        index,
        entries: Array.from({ length: n }, (_, i) => entry(i)),
        manifest: { ...manifest, count: n },
      });
    }
    expect((await store.load("v2", "defect")).manifest.count).toBe(20);
    expect(await readdir(path.join(scratch.dir, "v2"))).toEqual(["defect"]);
  });

  it("builds an HNSW index through the factory string", () => {
    const vectors = unitVectors(200);
    const index = buildVectorIndex({ dimension: DIM, factory: "HNSW32,Flat", vectors });
    expect(index.count).toBe(200);
    expect(index.search(vectors.subarray(0, DIM), 1).labels[0]).toBe(0);
  });

  it("sets HNSW efConstruction and efSearch, and a larger efSearch finds more of the exact top-10", () => {
    const dim = 64;
    let seed = 7;
    const rand = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647 - 0.5;
    };
    const n = 4000;
    const vectors = new Float32Array(n * dim).map(rand);
    const exact = buildVectorIndex({ dimension: dim, factory: "Flat", vectors });
    const hnsw = buildVectorIndex({
      dimension: dim,
      factory: "HNSW16,Flat",
      vectors,
      hnsw: { efConstruction: 20, efSearch: 8 },
    });
    expect(readHnswParams(hnsw.toBuffer())).toEqual({ efConstruction: 20, efSearch: 8 });
    const wide = vectorIndexFromBuffer(hnsw.toBuffer(), { efSearch: 256 });
    expect(readHnswParams(wide.toBuffer())?.efSearch).toBe(256);
    const recall = (index: typeof hnsw) => {
      let found = 0;
      for (let q = 0; q < 50; q++) {
        const query = new Float32Array(dim).map(rand);
        const truth = new Set(exact.search(query, 10).labels);
        found += index.search(query, 10).labels.filter((l) => truth.has(l)).length;
      }
      return found / 500;
    };
    const narrow = recall(hnsw);
    const broad = recall(wide);
    expect(broad).toBeGreaterThan(narrow);
    expect(broad).toBeGreaterThan(0.9);
    expect(readHnswParams(exact.toBuffer())).toBeUndefined();
  });
});
