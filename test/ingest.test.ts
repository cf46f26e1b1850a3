import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../src/app.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { createIngestService } from "../src/ingest/ingest.service.js";
import {
  DATASETS_DIR,
  SAMPLE_DIR,
  SHARED_PRESENT,
  startTestServers,
  testLogger,
} from "./support/services.js";

describe("ingestion of a dataset folder", () => {
  let servers: Awaited<ReturnType<typeof startTestServers>>;
  let app: App;
  let root: string;

  beforeAll(async () => {
    servers = await startTestServers();
    root = path.join(servers.dir, "dataset");
    // A small real folder from the shipped sample: 3 red_iron images, 3 surface_scratch images filed as
    // `good` (normal: the folder name is the label), plus a corrupt file.
    const source = await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") });
    for (const [cls, as] of [
      ["red_iron", "red_iron"],
      ["surface_scratch", "good"],
    ] as const) {
      const picks = source.filter((i) => i.defectCode === cls).slice(0, 3);
      for (const p of picks) {
        const dest = path.join(root, p.productCode, as, path.basename(p.path));
        await mkdir(path.dirname(dest), { recursive: true });
        await copyFile(p.path, dest);
      }
    }
    const corrupt = path.join(root, "steel_strip_xsdd", "red_iron", "corrupt.jpg");
    const real = await readFile(source[0]?.path ?? "");
    await writeFile(corrupt, real.subarray(0, 300));
    app = await createApp(servers.config, testLogger, { initialiseIndexes: false });
  });
  afterAll(async () => {
    await app?.close();
    await servers?.stop();
  });

  it("imports every readable image, reports the unreadable one with a reason, and is idempotent", async () => {
    const images = await listDatasetImages({ root });
    expect(images).toHaveLength(7);
    const first = await app.ingest.ingest(images);
    expect(first).toMatchObject({ total: 7, imported: 6, skipped: 0, failed: 1 });
    // Then a thumbnail for each imported image, once.
    expect(first.thumbnails).toMatchObject({ made: 6, failed: 0 });
    expect(first.failures[0]?.file).toMatch(/corrupt\.jpg$/);
    expect(first.failures[0]?.reason.length).toBeGreaterThan(10);
    const again = await app.ingest.ingest(images);
    expect(again).toMatchObject({ imported: 0, skipped: 6, failed: 1 });
    expect(again.thumbnails).toMatchObject({ made: 0, failed: 0 });
    expect(await app.repository.countGallery("normal", app.embedder.modelId)).toEqual({
      total: 3,
      missing: 0,
    });
    expect(await app.repository.countGallery("defect", app.embedder.modelId)).toEqual({
      total: 3,
      missing: 0,
    });
    // A run killed between a row and its embedding (before they were one transaction) left rows without
    // one; the next run embeds them instead of skipping them.
    await app.db.pool.query(
      "delete from image_embeddings where image_id in (select image_id from images where image_type = 'defect' limit 2)",
    );
    expect((await app.repository.countGallery("defect", app.embedder.modelId)).missing).toBe(2);
    const repair = await app.ingest.ingest(images);
    expect(repair).toMatchObject({ imported: 0, skipped: 4, repaired: 2, failed: 1 });
    expect((await app.repository.countGallery("defect", app.embedder.modelId)).missing).toBe(0);
  });

  it("in steps of two images, two steps embedded at once: the same outcome, a copy in a later step kept once", async () => {
    // 11 files in 6 steps: a byte-identical copy of the first image two steps later, the corrupt file in the
    // middle. Each step's decoding overlaps the previous step's inference, so steps finish out of turn.
    const source = await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") });
    const picks = source.filter((i) => i.defectCode === "oxide_scale_of_plate_system").slice(0, 9);
    expect(picks).toHaveLength(9);
    const stepRoot = path.join(servers.dir, "steps");
    const files: string[] = [];
    for (const [i, p] of picks.entries()) {
      const dest = path.join(stepRoot, p.productCode, "oxide_scale_of_plate_system", `${i}.jpg`);
      await mkdir(path.dirname(dest), { recursive: true });
      await copyFile(p.path, dest);
      files.push(dest);
    }
    const dir = path.dirname(files[0] ?? "");
    await copyFile(files[0] ?? "", path.join(dir, "4a-copy.jpg"));
    await writeFile(path.join(dir, "3a-corrupt.jpg"), (await readFile(files[0] ?? "")).subarray(0, 300));
    const images = await listDatasetImages({ root: stepRoot });
    expect(images).toHaveLength(11);
    const ingest = createIngestService({
      repository: app.repository,
      blobStore: app.blobStore,
      embedder: app.embedder,
      batchSize: 2,
      logger: testLogger,
    });
    const steps: number[] = [];
    // After each step's writes, while later steps are still embedded: its rows already name their
    // thumbnails (made from the bytes in hand, not by the pass after the run).
    const duringRun: Promise<{ total: number; missing: number }>[] = [];
    const run = await ingest.ingest(images, (p) => {
      steps.push(p.imported + p.skipped + p.failed);
      duringRun.push(
        app.db.pool
          .query<{ total: number; missing: number }>(
            "select count(*)::int as total, count(*) filter (where thumbnail_key is null)::int as missing from images where file_path like $1",
            [`${stepRoot}%`],
          )
          .then((r) => r.rows[0] ?? { total: 0, missing: -1 })
          // A failed query reads as a failed expectation below, not as an unhandled rejection.
          .catch(() => ({ total: -1, missing: -1 })),
      );
    });
    expect(run).toMatchObject({ total: 11, imported: 9, skipped: 1, failed: 1 });
    const counts = await Promise.all(duringRun);
    expect(counts.some((c) => c.total > 0 && c.total < 9)).toBe(true);
    for (const c of counts) expect(c.missing).toBe(0);
    expect(run.thumbnails).toMatchObject({ made: 9, failed: 0 });
    expect(run.failures.map((f) => path.basename(f.file))).toEqual(["3a-corrupt.jpg"]);
    expect(steps.length).toBeGreaterThanOrEqual(6);
    // Each image's stored embedding is the one a single run gives.
    const rows = await app.db.pool.query<{ file_path: string; image_id: number }>(
      "select file_path, image_id from images where file_path like $1",
      [`${stepRoot}%`],
    );
    expect(rows.rows).toHaveLength(9);
    const stored = await app.repository.getEmbeddings(
      rows.rows.map((r) => r.image_id),
      app.embedder.modelId,
    );
    for (const r of rows.rows) {
      const alone = await app.embedder.embedOne(await readFile(r.file_path), { texture: false });
      const v = stored.get(r.image_id);
      expect(v, r.file_path).toBeDefined();
      let dot = 0;
      for (let d = 0; d < alone.embedding.length; d++) dot += (alone.embedding[d] ?? 0) * (v?.[d] ?? 0);
      expect(dot, r.file_path).toBeGreaterThan(0.99999);
    }
    // The thumbnails are in the bucket; these small JPEGs are their own.
    const keys = await app.db.pool.query<{ file_path: string; thumbnail_key: string }>(
      "select file_path, thumbnail_key from images where file_path like $1",
      [`${stepRoot}%`],
    );
    for (const r of keys.rows)
      expect((await app.blobStore.get(r.thumbnail_key))?.equals(await readFile(r.file_path))).toBe(true);
    const again = await ingest.ingest(images);
    expect(again).toMatchObject({ imported: 0, skipped: 10, failed: 1 });
  });

  it(`reads only the gallery rows of split.csv when asked (${SHARED_PRESENT ? "shared neu_det" : "the shipped sample"})`, async () => {
    const splitRoot = SHARED_PRESENT
      ? path.join(DATASETS_DIR, "neu_det")
      : await sampleWithSplitCsv(path.join(servers.dir, "split"));
    const all = await listDatasetImages({ root: splitRoot });
    const gallery = await listDatasetImages({ root: splitRoot, split: "gallery" });
    const query = await listDatasetImages({ root: splitRoot, split: "query" });
    expect(gallery.length).toBeGreaterThan(0);
    expect(query.length).toBeGreaterThan(0);
    expect(gallery.length + query.length).toBe(all.length);
    const galleryGroups = new Set(gallery.map((g) => g.groupId));
    expect(query.some((q) => galleryGroups.has(q.groupId))).toBe(false);
  });
});

/**
 * The shipped sample as one `<product>/<defect>/<files>` tree under `dir` with a split.csv in the shared
 * datasets' format: its gallery as `gallery`, its held-back images as `query`, one group per image.
 */
async function sampleWithSplitCsv(dir: string): Promise<string> {
  const rows = ["path,split,group_id"];
  for (const [folder, split] of [
    ["gallery", "gallery"],
    ["held-back", "query"],
  ] as const) {
    for (const img of await listDatasetImages({ root: path.join(SAMPLE_DIR, folder) })) {
      await mkdir(path.join(dir, path.dirname(img.relPath)), { recursive: true });
      await copyFile(img.path, path.join(dir, img.relPath));
      rows.push(`sample/${img.relPath},${split},sample:${img.relPath}`);
    }
  }
  await writeFile(path.join(dir, "split.csv"), `${rows.join("\n")}\n`);
  return dir;
}
