import { createWriteStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { createExactBackend } from "../src/index/exact.backend.js";
import { isExactFactory, resolveFactory } from "../src/index/factory.js";
import { filteredSearch, planSearch, sortedContains, takeHits } from "../src/index/filtered-search.js";
import {
  columnsFromEntries,
  entryAt,
  matchingLabels,
  readColumns,
  serializeColumns,
} from "../src/index/gallery-columns.js";
import { mergeTopK, recallAt10, recallSample } from "../src/index/recall.js";

const entry = (i: number, product: string, defect: string | null) => ({
  imageId: i + 1,
  imageType: "defect" as const,
  productCode: product,
  productName: `${product} name`,
  defectCode: defect,
  defectName: defect ? `${defect} name` : null,
  filePath: null,
  storageUrl: `s3://b/${i}.jpg`,
  contentSha256: `sha${i}`,
});

describe("recall self-check", () => {
  it("samples distinct labels spread over the gallery, reproducibly", () => {
    const a = recallSample(1000, 100, 7);
    expect(new Set(a).size).toBe(100);
    expect(Array.from(a)).toEqual(Array.from(recallSample(1000, 100, 7)));
    expect(Math.max(...a)).toBeGreaterThan(900);
    expect(recallSample(5, 100, 1)).toHaveLength(5);
  });

  it("leaves the query's own label out of both lists", () => {
    // Query label 0; exact finds 0 (itself) then 1..10; approx finds 0 then 1..9 and 42.
    const exact = Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const approx = Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 42]);
    expect(recallAt10(Int32Array.from([0]), exact, 11, approx, 11)).toBeCloseTo(0.9);
    // Without the self label in the approximate list, its 10 real neighbours are compared.
    const noSelf = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, -1]);
    expect(recallAt10(Int32Array.from([0]), exact, 11, noSelf, 11)).toBe(1);
  });

  it("merges block top-k lists by score", () => {
    const acc = { labels: Int32Array.from([3, 1, -1]), distances: Float32Array.from([0.9, 0.5, -Infinity]) };
    mergeTopK(
      acc,
      { labels: Int32Array.from([0, 2, 1]), distances: Float32Array.from([0.95, 0.6, 0.1]) },
      3,
      10,
      true,
    );
    expect(Array.from(acc.labels)).toEqual([10, 3, 12]);
  });
});

describe("auto factory", () => {
  const policy = { flatMaxVectors: 1000, annFactory: "PCA256,HNSW32,Flat" };
  it("is exact Flat up to the threshold and the compressed ANN above it; explicit strings pass through", () => {
    expect(resolveFactory("auto", 1000, policy)).toBe("Flat");
    expect(resolveFactory("AUTO", 1001, policy)).toBe("PCA256,HNSW32,Flat");
    expect(resolveFactory("HNSW32,Flat", 5, policy)).toBe("HNSW32,Flat");
    expect(isExactFactory("Flat")).toBe(true);
    expect(isExactFactory("HNSW32,Flat")).toBe(false);
  });
});

describe("filtered search planning", () => {
  it("searches the ANN for topK plus slack when there is no filter", () => {
    expect(planSearch(1_000_000, null, 10)).toEqual({ kind: "ann", k: 18 });
  });
  it("searches a selective filter's subset exactly, in one pass", () => {
    const ids = Int32Array.from({ length: 500 }, (_, i) => i * 7);
    expect(planSearch(1_000_000, ids, 10)).toEqual({ kind: "subset", ids });
  });
  it("asks the ANN for topK over the filter's share when the filter keeps much of the gallery", () => {
    const ids = Int32Array.from({ length: 500_000 }, (_, i) => i * 2);
    expect(planSearch(1_000_000, ids, 10)).toEqual({ kind: "ann", k: 72 });
  });
  it("takes hits in order, skipping dropped labels and stopping at minScore", () => {
    const hits = { labels: Int32Array.from([5, 6, 7, 8]), scores: Float32Array.from([0.9, 0.8, 0.7, 0.1]) };
    expect(takeHits(hits, 2, (l) => l !== 6).hits.map((h) => h.label)).toEqual([5, 7]);
    expect(takeHits(hits, 4, () => true, 0.5)).toMatchObject({ cutByMinScore: true });
    expect(sortedContains(Int32Array.from([1, 4, 9]), 4)).toBe(true);
    expect(sortedContains(Int32Array.from([1, 4, 9]), 5)).toBe(false);
  });

  it("returns topK hits of a rare class through the exact reference index", async () => {
    const dim = 16;
    const n = 2000;
    let s = 3;
    const rand = () => {
      s = (s * 16807) % 2147483647;
      return s / 2147483647 - 0.5;
    };
    const vectors = new Float32Array(n * dim).map(rand);
    for (let i = 0; i < n; i++) {
      const row = vectors.subarray(i * dim, (i + 1) * dim);
      const norm = Math.hypot(...row);
      row.forEach((v, j) => {
        row[j] = v / norm;
      });
    }
    const entries = Array.from({ length: n }, (_, i) => entry(i, "P", i % 400 === 0 ? "rare" : "common"));
    const columns = columnsFromEntries("defect", entries);
    const { index } = await createExactBackend().build({
      dimension: dim,
      factory: "Flat",
      vectors,
      params: {},
      recall: null,
    });
    const matching = matchingLabels(columns, { defectCodes: ["rare"] });
    expect(matching).toHaveLength(5);
    const r = await filteredSearch(index, vectors.subarray(0, dim), { topK: 5, matching });
    expect(r.plan).toBe("subset");
    expect(r.passes).toBe(1);
    expect(r.hits.map((h) => h.label).sort((a, b) => a - b)).toEqual([0, 400, 800, 1200, 1600]);
    // A broad filter goes through the ANN and still fills topK.
    const common = matchingLabels(columns, { defectCodes: ["common"], productCodes: ["P"] });
    const broad = await filteredSearch(index, vectors.subarray(0, dim), {
      topK: 10,
      matching: common,
      limits: { subsetMaxLabels: 10, subsetMaxShare: 0.01, oversample: 2, extra: 8 },
    });
    expect(broad.plan).toBe("ann");
    expect(broad.hits).toHaveLength(10);
    expect(broad.hits.every((h) => h.label % 400 !== 0)).toBe(true);
  });
});

describe("gallery columns (metadata.json)", () => {
  it("round-trips entries through the column file and filters by product and defect codes", async () => {
    const entries = [
      entry(0, "A", "scratch"),
      entry(1, "B", null),
      entry(2, "A", null),
      { ...entry(3, "A", "dent"), imageId: null, storageUrl: null },
    ];
    const columns = columnsFromEntries("defect", entries);
    const dir = await mkdtemp(path.join(tmpdir(), "cols-"));
    try {
      const file = path.join(dir, "metadata.json");
      await pipeline(serializeColumns(columns), createWriteStream(file));
      const back = await readColumns(file);
      expect(entries.map((_, i) => entryAt(back, i))).toEqual(entries);
      expect(
        Array.from(matchingLabels(back, { productCodes: ["A"], defectCodes: ["normal", "dent"] })),
      ).toEqual([2, 3]);
      // Still plain JSON for any other reader.
      const { readFile } = await import("node:fs/promises");
      expect(JSON.parse(await readFile(file, "utf8")).productIndex).toEqual([0, 1, 0, 0]);
      await writeFile(
        file,
        (await readFile(file, "utf8")).replace('"productIndex":[0,1,0,0]', '"productIndex":[0,1,0]'),
      );
      await expect(readColumns(file)).rejects.toThrow(/productIndex/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
