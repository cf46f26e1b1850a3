import { spawn } from "node:child_process";
import { readdir, readFile, readlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFaissWorkerBackend } from "../src/index/faiss/faiss-worker.backend.js";
import { columnsFromEntries } from "../src/index/gallery-columns.js";
import { createIndexStore, type IndexManifest, indexScratchDir } from "../src/index/index.store.js";
import type { VectorIndex } from "../src/index/vector-index.js";
import { REPO_ROOT, scratchDir, testLogger } from "./support/services.js";
import { unitVectors as sharedUnitVectors } from "./support/vectors.js";

const DIM = 8;
const unitVectors = (n: number, seed = 1) => sharedUnitVectors(n, DIM, seed);
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
const columns = (n: number) =>
  columnsFromEntries(
    "defect",
    Array.from({ length: n }, (_, i) => entry(i)),
  );
const manifest: Omit<
  IndexManifest,
  "indexSha256" | "metadataSha256" | "vectorsSha256" | "count" | "space" | "projection" | "adaptation"
> = {
  formatVersion: 2,
  matcherVersion: "v2",
  imageType: "defect",
  modelId: "m@1",
  dimension: DIM,
  configuredFactory: "Flat",
  factory: "Flat",
  params: {},
  recall: null,
  buildMs: 1,
  galleryFingerprint: "count=50",
  builtAt: new Date().toISOString(),
};

/** True when `dir` holds the `defect` link and exactly the one version folder it points to. */
async function onlyLinkAndOneVersion(dir: string): Promise<boolean> {
  const names = (await readdir(dir)).sort();
  const target = await readlink(path.join(dir, "defect"));
  return names.length === 2 && names.includes("defect") && names.includes(target);
}

describe("index store with the FAISS worker backend", () => {
  const backend = createFaissWorkerBackend({ logger: testLogger });
  const open: VectorIndex[] = [];
  const build = async (n: number, seed = 1) => {
    const { index } = await backend.build({
      dimension: DIM,
      factory: "Flat",
      vectors: unitVectors(n, seed),
      params: {},
      recall: null,
    });
    open.push(index);
    return index;
  };
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  beforeEach(async () => {
    scratch = await scratchDir();
  });
  afterEach(() => scratch.remove());
  afterAll(async () => {
    await Promise.all(open.map((i) => i.close()));
  });

  it("persists and loads an index with the same answers, leaving no temporary folder", async () => {
    const store = createIndexStore({ root: scratch.dir });
    const index = await build(50);
    const saved = await store.save({ index, columns: columns(50), manifest: { ...manifest, count: 50 } });
    expect(saved.indexSha256).toMatch(/^[0-9a-f]{64}$/);
    const loaded = await store.load("v2", "defect", backend, {});
    open.push(loaded.index);
    const q = unitVectors(50).subarray(3 * DIM, 4 * DIM);
    expect(await loaded.index.search(q, 5)).toEqual(await index.search(q, 5));
    expect(loaded.columns.defects[loaded.columns.defectIndex[3] as number]?.code).toBe("d3");
    expect(await store.verify("v2", "defect", loaded.manifest)).toBeNull();
    expect(await onlyLinkAndOneVersion(path.join(scratch.dir, "v2"))).toBe(true);
    expect((await readdir(store.dirOf("v2", "defect"))).sort()).toEqual([
      "faiss_index.bin",
      "manifest.json",
      "metadata.json",
    ]);
  });

  it("reports files that no longer match their manifest checksum", async () => {
    const store = createIndexStore({ root: scratch.dir });
    const index = await build(10);
    const saved = await store.save({ index, columns: columns(10), manifest: { ...manifest, count: 10 } });
    const meta = path.join(store.dirOf("v2", "defect"), "metadata.json");
    await writeFile(meta, (await readFile(meta, "utf8")).replace('"d1"', '"tampered"'));
    expect(await store.verify("v2", "defect", saved)).toMatch(
      /metadata.json does not match its manifest checksum/,
    );
  });

  it("refuses to load an index whose vector count disagrees with its manifest", async () => {
    const store = createIndexStore({ root: scratch.dir });
    const index = await build(10);
    await store.save({ index, columns: columns(10), manifest: { ...manifest, count: 10 } });
    const file = path.join(store.dirOf("v2", "defect"), "manifest.json");
    const m = JSON.parse(await readFile(file, "utf8"));
    await writeFile(file, JSON.stringify({ ...m, count: 11 }));
    await expect(store.load("v2", "defect", backend, {})).rejects.toThrow(/11/);
  });

  it("re-ranks a compressed index by exact inner product from vectors.f32, which it persists, checks and reloads", async () => {
    const store = createIndexStore({ root: scratch.dir });
    const scratchFolder = await indexScratchDir(scratch.dir);
    const sq = createFaissWorkerBackend({ logger: testLogger, scratchDir: scratchFolder });
    const n = 300;
    const vectors = unitVectors(n, 5);
    const { index } = await sq.build({
      dimension: DIM,
      factory: "HNSW16,SQ8",
      vectors: Float32Array.from(vectors),
      params: { efSearch: 64 },
      recall: null,
    });
    open.push(index);
    // The build wrote the full-precision vectors to the scratch folder; the save moves them.
    expect(await readdir(scratchFolder)).toHaveLength(1);
    const saved = await store.save({
      index,
      columns: columns(n),
      manifest: { ...manifest, factory: "HNSW16,SQ8", count: n },
    });
    expect(await readdir(scratchFolder)).toHaveLength(0);
    expect(saved.vectorsSha256).toMatch(/^[0-9a-f]{64}$/);
    const loaded = await store.load("v2", "defect", sq, {});
    open.push(loaded.index);
    const q = vectors.slice(7 * DIM, 8 * DIM);
    const hits = await loaded.index.search(q, 5);
    expect(hits.labels[0]).toBe(7);
    // Exact scores, not SQ8 approximations: the query's own vector scores 1 to float precision.
    expect(hits.scores[0]).toBeCloseTo(1, 5);
    const exactOf = (label: number) =>
      vectors.subarray(label * DIM, (label + 1) * DIM).reduce((s, v, j) => s + v * (q[j] as number), 0);
    hits.labels.forEach((l, i) => {
      expect(hits.scores[i]).toBeCloseTo(exactOf(l), 5);
    });
    const file = path.join(store.dirOf("v2", "defect"), "vectors.f32");
    const bytes = await readFile(file);
    bytes[0] = (bytes[0] as number) ^ 1;
    await writeFile(file, bytes);
    expect(await store.verify("v2", "defect", saved)).toMatch(/vectors.f32 does not match/);
  });

  it("replaces a previous index atomically", async () => {
    const store = createIndexStore({ root: scratch.dir });
    for (const n of [10, 20]) {
      const index = await build(n, n);
      await store.save({ index, columns: columns(n), manifest: { ...manifest, count: n } });
    }
    const loaded = await store.load("v2", "defect", backend, {});
    open.push(loaded.index);
    expect(loaded.manifest.count).toBe(20);
    expect(await onlyLinkAndOneVersion(path.join(scratch.dir, "v2"))).toBe(true);
  });

  it.each(["files-written", "version-in-place", "link-written"] as const)(
    "leaves a loadable complete index when the process is killed (SIGKILL) at save step %s",
    async (step) => {
      const code = await new Promise<number | null>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          ["--import", "tsx", path.join(REPO_ROOT, "test/support/crash-during-save.ts"), scratch.dir, step],
          { cwd: REPO_ROOT, stdio: "inherit" },
        );
        child.once("error", reject);
        child.once("exit", (c, signal) => resolve(signal === "SIGKILL" ? null : c));
      });
      expect(code).toBeNull(); // it really died mid-save
      const store = createIndexStore({ root: scratch.dir });
      await store.recover("v2", "defect");
      const loaded = await store.load("v2", "defect", backend, {});
      open.push(loaded.index);
      // The first save's index: the second never completed.
      expect(loaded.manifest.count).toBe(10);
      expect(await store.verify("v2", "defect", loaded.manifest)).toBeNull();
      expect(await onlyLinkAndOneVersion(path.join(scratch.dir, "v2"))).toBe(true);
    },
  );
});
