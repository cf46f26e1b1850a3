import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../src/app.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import {
  DATASETS_DIR,
  scratchDir,
  startTestDatabase,
  startTestS3,
  testConfig,
  testLogger,
} from "./support/services.js";

describe("ingestion of a dataset folder", () => {
  let db: Awaited<ReturnType<typeof startTestDatabase>>;
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  let app: App;
  let root: string;

  beforeAll(async () => {
    [db, s3, scratch] = await Promise.all([startTestDatabase(), startTestS3(), scratchDir()]);
    root = path.join(scratch.dir, "dataset");
    // A small real folder: 3 tiles of each of two classes from magnetic_tile (one good), plus a corrupt file.
    const source = await listDatasetImages({ root: path.join(DATASETS_DIR, "magnetic_tile") });
    for (const cls of ["crack", "good"]) {
      const picks = source.filter((i) => i.relPath.split("/")[1] === cls).slice(0, 3);
      for (const p of picks) {
        const dest = path.join(root, p.relPath);
        await mkdir(path.dirname(dest), { recursive: true });
        await copyFile(p.path, dest);
      }
    }
    const corrupt = path.join(root, "magnetic_tile", "crack", "corrupt.jpg");
    const real = await readFile(source[0]?.path ?? "");
    await writeFile(corrupt, real.subarray(0, 300));
    app = await createApp(
      testConfig({ databaseUrl: db.url, s3, indexDir: path.join(scratch.dir, "idx") }),
      testLogger,
      {
        initialiseIndexes: false,
      },
    );
  });
  afterAll(async () => {
    await app?.close();
    await Promise.all([db?.stop(), s3?.stop()]);
    await scratch?.remove();
  });

  it("imports every readable image, reports the unreadable one with a reason, and is idempotent", async () => {
    const images = await listDatasetImages({ root });
    expect(images).toHaveLength(7);
    const first = await app.ingest.ingest(images);
    expect(first).toMatchObject({ total: 7, imported: 6, skipped: 0, failed: 1 });
    expect(first.failures[0]?.file).toMatch(/corrupt\.jpg$/);
    expect(first.failures[0]?.reason.length).toBeGreaterThan(10);
    const again = await app.ingest.ingest(images);
    expect(again).toMatchObject({ imported: 0, skipped: 6, failed: 1 });
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

  it("reads only the gallery rows of split.csv when asked", async () => {
    const all = await listDatasetImages({ root: path.join(DATASETS_DIR, "neu_det") });
    const gallery = await listDatasetImages({ root: path.join(DATASETS_DIR, "neu_det"), split: "gallery" });
    const query = await listDatasetImages({ root: path.join(DATASETS_DIR, "neu_det"), split: "query" });
    expect(gallery.length + query.length).toBe(all.length);
    const galleryGroups = new Set(gallery.map((g) => g.groupId));
    expect(query.some((q) => galleryGroups.has(q.groupId))).toBe(false);
  });
});
