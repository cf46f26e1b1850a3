import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDbClient, type DbClient } from "../src/db/db.client.js";
import { createImageRepository, type ImageRepository, type NewImage } from "../src/db/images.repository.js";
import { startTestDatabase, testLogger } from "./support/services.js";

const vec = (...xs: number[]) => new Float32Array(xs);

describe("image repository on a real PostgreSQL", () => {
  let database: Awaited<ReturnType<typeof startTestDatabase>>;
  let client: DbClient;
  let repo: ImageRepository;
  beforeAll(async () => {
    database = await startTestDatabase();
    client = createDbClient({ url: database.url, logger: testLogger });
    await client.migrate();
    repo = createImageRepository({ db: client.db });
  });
  afterAll(async () => {
    await client?.close();
    await database?.stop();
  });

  const image = (over: Partial<NewImage> & { productId: number }): NewImage => ({
    defectTypeId: null,
    imageType: "normal",
    filePath: null,
    storageUrl: null,
    contentSha256: Math.random().toString(16).slice(2).padEnd(64, "0"),
    contentType: "image/jpeg",
    width: 10,
    height: 10,
    fileSizeBytes: 100,
    ...over,
  });

  it("applies the migrations idempotently", async () => {
    await client.migrate();
    const tables = await client.pool.query(
      "select table_name from information_schema.tables where table_schema = 'public' order by 1",
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual([
      "active_indexes",
      "active_model_changes",
      "defect_types",
      "embedding_models",
      "gallery_changes",
      "image_embeddings",
      "images",
      "index_versions",
      "matcher_version_changes",
      "near_duplicates",
      "products",
      "rebuild_tasks",
      "replicas",
      "shadow_comparisons",
    ]);
  });

  it("creates products and defect types once per code", async () => {
    const a = await repo.ensureProduct("P001", "Bracket");
    expect(await repo.ensureProduct("P001", "Another name")).toBe(a);
    const d = await repo.ensureDefectType("scratch", "Scratch");
    expect(await repo.ensureDefectType("scratch", "Scratch")).toBe(d);
  });

  it("inserts an image once per content hash, leaving a repeat out", async () => {
    const productId = await repo.ensureProduct("P002", "Plate");
    const row = image({ productId, contentSha256: "a".repeat(64) });
    const first = await repo.insertImages([row]);
    expect(first.get("a".repeat(64))).toBeGreaterThan(0);
    const second = await repo.insertImages([{ ...row, filePath: "/elsewhere.jpg" }]);
    expect(second.size).toBe(0);
    const existing = await repo.findExisting(["a".repeat(64), "b".repeat(64)], "m@1");
    expect([...existing.keys()]).toEqual(["a".repeat(64)]);
    expect(existing.get("a".repeat(64))).toEqual({ imageId: first.get("a".repeat(64)), embedded: false });
  });

  it("refuses a defect image without a defect type (check constraint)", async () => {
    const productId = await repo.ensureProduct("P003", "Tile");
    await expect(repo.insertImages([image({ productId, imageType: "defect" })])).rejects.toThrow();
  });

  it("lists gallery pages with labels and the embedding of the asked model only", async () => {
    const productId = await repo.ensureProduct("P004", "Gear");
    const defectTypeId = await repo.ensureDefectType("dent", "Dent");
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) {
      const row = image({ productId, defectTypeId, imageType: "defect" });
      const id = (await repo.insertImages([row])).get(row.contentSha256);
      if (id !== undefined) ids.push(id);
    }
    await repo.saveEmbeddings([
      { imageId: ids[0] as number, modelId: "m1", embedding: vec(1, 0) },
      { imageId: ids[1] as number, modelId: "m2", embedding: vec(0, 1) },
    ]);
    // A second save of the same (image, model) keeps the first vector.
    await repo.saveEmbeddings([{ imageId: ids[0] as number, modelId: "m1", embedding: vec(0, 1) }]);
    const page = await repo.listGalleryPage({
      imageType: "defect",
      modelId: "m1",
      afterImageId: 0,
      limit: 100,
    });
    const mine = page.filter((r) => ids.includes(r.imageId));
    expect(mine).toHaveLength(3);
    expect(mine[0]).toMatchObject({
      productCode: "P004",
      productName: "Gear",
      defectCode: "dent",
      defectName: "Dent",
    });
    expect(Array.from(mine[0]?.embedding ?? [])).toEqual([1, 0]);
    expect(mine[1]?.embedding).toBeNull();
    expect(await repo.countGallery("defect", "m1")).toMatchObject({ missing: expect.any(Number) });
    const second = await repo.listGalleryPage({
      imageType: "defect",
      modelId: "m1",
      afterImageId: ids[1] as number,
      limit: 100,
    });
    expect(second.map((r) => r.imageId)).toEqual([ids[2]]);
  });

  it("changes the gallery fingerprint when an image is added", async () => {
    const before = await repo.galleryFingerprint("normal");
    await repo.insertImages([image({ productId: await repo.ensureProduct("P005", "Shaft") })]);
    const after = await repo.galleryFingerprint("normal");
    expect(after.count).toBe(before.count + 1);
    expect(after.maxImageId).toBeGreaterThan(before.maxImageId);
  });
});
