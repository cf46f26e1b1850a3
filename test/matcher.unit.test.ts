import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIndexArtifacts } from "../src/deployment/index-artifacts.js";
import { createExactBackend } from "../src/index/exact.backend.js";
import type { GalleryEntry } from "../src/index/gallery-entry.js";
import { createIndexStore, indexVersionId } from "../src/index/index.store.js";
import type { CollectedGallery, GallerySource } from "../src/matchers/gallery-source.js";
import { createMatcher, type Matcher } from "../src/matchers/matcher.js";
import type { ImageType } from "../src/shared/types.js";
import { createMinioBlobStore } from "../src/storage/blob-store.js";
import { scratchDir, startTestS3, testLogger } from "./support/services.js";

const DIM = 8;

/** A gallery held in memory: the matcher's whole contract, without PostgreSQL or images. */
function memoryGallery() {
  const rows: { entry: GalleryEntry; vector: Float32Array }[] = [];
  let changes = 0;
  const source: GallerySource = {
    version: "v2",
    description: "memory",
    async collect(imageType): Promise<CollectedGallery> {
      const mine = rows.filter((r) => r.entry.imageType === imageType);
      const vectors = new Float32Array(mine.length * DIM);
      mine.forEach((r, i) => {
        vectors.set(r.vector, i * DIM);
      });
      return { entries: mine.map((r) => r.entry), vectors, failures: [] };
    },
    fingerprint: async (imageType: ImageType) =>
      `${imageType}:${rows.filter((r) => r.entry.imageType === imageType).length}:${changes}`,
  };
  return {
    source,
    /** Adds a unit vector along axis `axis % DIM`, slightly tilted by `i`. */
    add(i: number, axis: number, defectCode: string) {
      const v = new Float32Array(DIM);
      v[axis % DIM] = 1;
      v[(axis + 1) % DIM] = 0.01 * i;
      const n = Math.hypot(...v);
      for (let k = 0; k < DIM; k++) v[k] = (v[k] as number) / n;
      rows.push({
        entry: {
          imageId: i,
          imageType: "defect",
          productCode: "P",
          productName: null,
          defectCode,
          defectName: null,
          filePath: null,
          storageUrl: null,
          contentSha256: `sha-${i}`,
        },
        vector: v,
      });
      changes++;
    },
  };
}

const axis = (a: number) => {
  const v = new Float32Array(DIM);
  v[a] = 1;
  return v;
};

describe("matcher over an in-memory gallery and the exact backend", () => {
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  const matchers: Matcher[] = [];
  const gallery = memoryGallery();
  const make = (root: string) => {
    const m = createMatcher({
      version: "v2",
      source: gallery.source,
      store: createIndexStore({ root }),
      backend: createExactBackend(),
      modelId: "memory@1",
      dimension: DIM,
      index: {
        factory: "Flat",
        auto: { flatMaxVectors: 1000, annFactory: "HNSW16,SQ8" },
        efConstruction: 40,
        efSearch: 64,
        recallFloor: 0.9,
        recallQueries: 10,
      },
      logger: testLogger,
    });
    matchers.push(m);
    return m;
  };
  beforeAll(async () => {
    [scratch, s3] = await Promise.all([scratchDir(), startTestS3()]);
    for (let i = 1; i <= 12; i++) gallery.add(i, i % 3, `d${i % 3}`);
  });
  afterAll(async () => {
    for (const m of matchers) await m.close();
    await s3?.stop();
    await scratch?.remove();
  });

  it("rebuilds, serves, searches with filters, and names the served version by its manifest", async () => {
    const m = make(path.join(scratch.dir, "a"));
    expect(m.state("defect").ready).toBe(false);
    await expect(m.search("defect", axis(0), { topK: 3 })).rejects.toMatchObject({ code: "INDEX_NOT_READY" });
    const outcome = await m.rebuild("defect", () => {});
    expect(m.state("defect")).toMatchObject({ ready: true, count: 12, source: "built" });
    expect(m.state("defect").indexVersionId).toBe(indexVersionId(outcome.manifest));
    const { matches } = await m.search("defect", axis(1), { topK: 4 });
    expect(matches.map((x) => x.entry.defectCode)).toEqual(["d1", "d1", "d1", "d1"]);
    const filtered = await m.search("defect", axis(1), { topK: 2, defectCodes: ["d2"] });
    expect(filtered.matches.every((x) => x.entry.defectCode === "d2")).toBe(true);
  });

  it("a second store loads the published artifact and serves the same version; a corrupt one is refused whole", async () => {
    const built = matchers[0] as Matcher;
    const blobStore = createMinioBlobStore({ ...s3, bucket: "matcher-unit", region: "us-east-1" });
    await blobStore.ensureBucket();
    const artifacts = (root: string) =>
      createIndexArtifacts({
        blobStore,
        raw: createIndexStore({ root }),
        adapted: createIndexStore({ root: path.join(root, "adapted") }),
        // Small parts, so every file of this small index is stored as several objects and joined again.
        partBytes: 97,
      });
    const manifest = built.servedManifest("defect");
    if (!manifest) throw new Error("nothing served");
    const published = await artifacts(path.join(scratch.dir, "a")).publish("v2", "defect", manifest);
    expect(published.indexVersionId).toBe(built.state("defect").indexVersionId);
    const record = {
      indexVersionId: published.indexVersionId,
      artifactKey: published.key,
      artifactSha256: published.listSha256,
    };

    const other = make(path.join(scratch.dir, "b"));
    await artifacts(path.join(scratch.dir, "b")).download("v2", "defect", record);
    expect(await other.loadPersisted("defect", "downloaded", false)).toBe(true);
    expect(other.state("defect")).toMatchObject({ source: "downloaded", count: 12 });
    expect(other.state("defect").indexVersionId).toBe(published.indexVersionId);
    const a = await built.search("defect", axis(2), { topK: 5 });
    const b = await other.search("defect", axis(2), { topK: 5 });
    expect(b.matches.map((x) => x.entry.imageId)).toEqual(a.matches.map((x) => x.entry.imageId));

    // One flipped byte in the bucket: nothing is installed in the third cache.
    const key = `${published.key}raw/metadata.json.part-00001`;
    const bytes = (await blobStore.get(key)) as Buffer;
    bytes[10] = (bytes[10] as number) ^ 0xff;
    await blobStore.put(key, bytes, "application/json");
    const third = artifacts(path.join(scratch.dir, "c"));
    await expect(third.download("v2", "defect", record)).rejects.toThrow(
      /metadata\.json does not match its sha256/,
    );
    expect(
      await createIndexStore({ root: path.join(scratch.dir, "c") }).readManifest("v2", "defect"),
    ).toBeUndefined();
    // A list that does not match the database's sha256 is refused before any file is read.
    await expect(
      third.download("v2", "defect", { ...record, artifactSha256: "0".repeat(64) }),
    ).rejects.toThrow(/artifact\.json does not match the sha256 recorded/);
  });

  it("swaps a rebuilt index in while searches run, none failing", async () => {
    const m = matchers[0] as Matcher;
    for (let i = 13; i <= 40; i++) gallery.add(i, i % 3, `d${i % 3}`);
    let failed = 0;
    let done = false;
    let searches = 0;
    const searching = (async () => {
      while (!done) {
        await m.search("defect", axis(0), { topK: 3 }).catch(() => failed++);
        searches++;
        // The exact backend answers in a microtask: let the rebuild's I/O run between searches.
        await new Promise((r) => setImmediate(r));
      }
    })();
    await m.rebuild("defect", () => {});
    done = true;
    await searching;
    expect(failed).toBe(0);
    expect(searches).toBeGreaterThan(0);
    expect(m.state("defect").count).toBe(40);
  });

  it("takes a persisted index whose file no longer matches its manifest out of service", async () => {
    const root = path.join(scratch.dir, "a");
    const m = make(root);
    const dir = createIndexStore({ root }).dirOf("v2", "defect");
    const file = path.join(dir, "metadata.json");
    const text = await readFile(file, "utf8");
    await writeFile(file, `${text} `);
    expect(await m.loadPersisted("defect", "loaded", false)).toBe(true);
    const t0 = Date.now();
    while (m.state("defect").ready && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(m.state("defect").ready).toBe(false);
  });
});
