import { and, asc, eq, gt, inArray, isNotNull, isNull, type SQL, sql } from "drizzle-orm";
import type { ImageType } from "../shared/types.js";
import type { Database } from "./db.client.js";
import { defectTypes } from "./defect-types.table.js";
import { appendChanges, type Tx } from "./gallery-change-log.js";
import { imageEmbeddings } from "./image-embeddings.table.js";
import { images } from "./images.table.js";
import { products } from "./products.table.js";

/** A gallery image with its product, defect type and (if computed for the model) its embedding. */
export interface GalleryRow {
  imageId: number;
  imageType: ImageType;
  productCode: string;
  productName: string;
  defectCode: string | null;
  defectName: string | null;
  filePath: string | null;
  storageUrl: string | null;
  contentSha256: string;
  /** L2-normalised vector for the requested model, or null when not computed yet. */
  embedding: Float32Array | null;
}

/** A label with how many gallery images carry it. */
export interface LabelCount {
  code: string;
  name: string;
  imageCount: number;
}

/** A product with its gallery counts by image type. */
export interface ProductCount extends LabelCount {
  defectCount: number;
  normalCount: number;
}

/** Which gallery images a browse returns; unset fields do not filter. */
export interface GalleryBrowseFilter {
  productCode?: string | null;
  /** A defect code, or "normal" for normal images. */
  defectCode?: string | null;
  imageType?: ImageType | null;
}

/** A gallery image as the gallery browser lists it. */
export type BrowsedImage = Omit<GalleryRow, "embedding"> & {
  thumbnailKey: string | null;
  width: number;
  height: number;
};

/** Columns of a new `images` row. */
export interface NewImage {
  productId: number;
  defectTypeId: number | null;
  imageType: ImageType;
  filePath: string | null;
  storageUrl: string | null;
  /** Object key of the thumbnail, when one was made. */
  thumbnailKey?: string | null;
  contentSha256: string;
  contentType: string | null;
  width: number;
  height: number;
  fileSizeBytes: number;
}

/** One embedding to store. */
export interface NewEmbedding {
  imageId: number;
  modelId: string;
  /** L2-normalised float32 vector. */
  embedding: Float32Array;
}

/** The database handle or a transaction of it: what a statement runs on. */
export type Executor = Database | Tx;

/** The id of the product with `code`, created with `name` if missing, on `exec`. */
export async function ensureProduct(exec: Executor, code: string, name: string): Promise<number> {
  await exec.insert(products).values({ productCode: code, productName: name }).onConflictDoNothing();
  const [row] = await exec
    .select({ id: products.productId })
    .from(products)
    .where(eq(products.productCode, code));
  if (!row) throw new Error(`product ${code} vanished after insert`);
  return row.id;
}

/** The id of the defect type with `code`, created with `name` if missing, on `exec`. */
export async function ensureDefectType(exec: Executor, code: string, name: string): Promise<number> {
  await exec.insert(defectTypes).values({ defectCode: code, defectName: name }).onConflictDoNothing();
  const [row] = await exec
    .select({ id: defectTypes.defectTypeId })
    .from(defectTypes)
    .where(eq(defectTypes.defectCode, code));
  if (!row) throw new Error(`defect type ${code} vanished after insert`);
  return row.id;
}

/** A gallery row's columns with its labels (join products, left join defect types). */
export const galleryColumns = {
  imageId: images.imageId,
  imageType: images.imageType,
  productCode: products.productCode,
  productName: products.productName,
  defectCode: defectTypes.defectCode,
  defectName: defectTypes.defectName,
  filePath: images.filePath,
  storageUrl: images.storageUrl,
  contentSha256: images.contentSha256,
};

/**
 * Queries over products, defect types, images and embeddings.
 * Driver errors are translated here; callers see domain outcomes (e.g. "already imported").
 */
export function createImageRepository({ db }: { db: Database }) {
  /** Gallery rows joined with their labels, as the browser lists them. */
  const browseSelect = () =>
    db
      .select({
        ...galleryColumns,
        thumbnailKey: images.thumbnailKey,
        width: images.width,
        height: images.height,
      })
      .from(images)
      .innerJoin(products, eq(images.productId, products.productId))
      .leftJoin(defectTypes, eq(images.defectTypeId, defectTypes.defectTypeId));

  return {
    /** Returns the id of the product with `code`, creating it with `name` if missing. */
    ensureProduct: (code: string, name: string): Promise<number> => ensureProduct(db, code, name),

    /** Returns the id of the defect type with `code`, creating it with `name` if missing. */
    ensureDefectType: (code: string, name: string): Promise<number> => ensureDefectType(db, code, name),

    /**
     * The subset of `hashes` already imported, each with its image id and whether it has an embedding of
     * `modelId` (a process killed mid-ingest before this was one transaction could leave rows without).
     */
    async findExisting(
      hashes: readonly string[],
      modelId: string,
    ): Promise<Map<string, { imageId: number; embedded: boolean }>> {
      if (hashes.length === 0) return new Map();
      const rows = await db
        .select({ sha: images.contentSha256, imageId: images.imageId, embedded: imageEmbeddings.imageId })
        .from(images)
        .leftJoin(
          imageEmbeddings,
          and(eq(imageEmbeddings.imageId, images.imageId), eq(imageEmbeddings.modelId, modelId)),
        )
        .where(inArray(images.contentSha256, [...hashes]));
      return new Map(rows.map((r) => [r.sha, { imageId: r.imageId, embedded: r.embedded !== null }]));
    },

    /**
     * Inserts image rows and their embeddings of `modelId` in one transaction, so a crash never leaves a
     * row without its embedding, with their change-log rows; rows whose content hash is already known are
     * left out.
     * @returns the new image id of each inserted row, by content hash.
     */
    async insertImagesWithEmbeddings(
      rows: readonly (NewImage & { embedding: Float32Array })[],
      modelId: string,
    ): Promise<Map<string, number>> {
      if (rows.length === 0) return new Map();
      return db.transaction(async (tx) => {
        const inserted = await tx
          .insert(images)
          .values(rows.map(({ embedding: _e, ...row }) => row))
          .onConflictDoNothing({ target: images.contentSha256 })
          .returning({ imageId: images.imageId, sha: images.contentSha256 });
        const ids = new Map(inserted.map((r) => [r.sha, r.imageId]));
        const embeddings = rows.flatMap((r) => {
          const imageId = ids.get(r.contentSha256);
          return imageId === undefined
            ? []
            : [{ imageId, modelId, embedding: r.embedding, dimension: r.embedding.length }];
        });
        if (embeddings.length > 0) await tx.insert(imageEmbeddings).values(embeddings).onConflictDoNothing();
        // Logged, so running replicas serve the new images without a rebuild.
        await appendChanges(
          tx,
          inserted.map((r) => ({ imageId: r.imageId, kind: "add" as const })),
          "ingest",
        );
        return ids;
      });
    },

    /**
     * Inserts many image rows in one statement; rows whose content hash is already known are left out.
     * @returns the new image id of each inserted row, by content hash.
     */
    async insertImages(rows: readonly NewImage[]): Promise<Map<string, number>> {
      if (rows.length === 0) return new Map();
      const inserted = await db
        .insert(images)
        .values([...rows])
        .onConflictDoNothing({ target: images.contentSha256 })
        .returning({ imageId: images.imageId, sha: images.contentSha256 });
      return new Map(inserted.map((r) => [r.sha, r.imageId]));
    },

    /** Stores embeddings; an existing (image, model) pair is kept as it is. */
    async saveEmbeddings(rows: readonly NewEmbedding[]): Promise<void> {
      if (rows.length === 0) return;
      await db
        .insert(imageEmbeddings)
        .values(rows.map((r) => ({ ...r, dimension: r.embedding.length })))
        .onConflictDoNothing();
    },

    /** The stored embedding of one image for `modelId`, if computed. */
    async getEmbedding(imageId: number, modelId: string): Promise<Float32Array | undefined> {
      const [row] = await db
        .select({ embedding: imageEmbeddings.embedding })
        .from(imageEmbeddings)
        .where(and(eq(imageEmbeddings.imageId, imageId), eq(imageEmbeddings.modelId, modelId)));
      return row?.embedding;
    },

    /** The stored embeddings of `imageIds` for `modelId`, by image id (missing ones left out). */
    async getEmbeddings(imageIds: readonly number[], modelId: string): Promise<Map<number, Float32Array>> {
      if (imageIds.length === 0) return new Map();
      const rows = await db
        .select({ imageId: imageEmbeddings.imageId, embedding: imageEmbeddings.embedding })
        .from(imageEmbeddings)
        .where(and(inArray(imageEmbeddings.imageId, [...imageIds]), eq(imageEmbeddings.modelId, modelId)));
      return new Map(rows.map((r) => [r.imageId, r.embedding]));
    },

    /** One gallery image with its labels, if it exists. */
    async getGalleryImage(imageId: number): Promise<Omit<GalleryRow, "embedding"> | undefined> {
      const [row] = await db
        .select(galleryColumns)
        .from(images)
        .innerJoin(products, eq(images.productId, products.productId))
        .leftJoin(defectTypes, eq(images.defectTypeId, defectTypes.defectTypeId))
        .where(eq(images.imageId, imageId));
      return row;
    },

    /**
     * One page of gallery rows of `imageType`, ordered by image id, joined with their labels and the
     * embedding of `modelId` (null where missing). Keyset pagination keeps memory flat on big galleries.
     */
    async listGalleryPage({
      imageType,
      modelId,
      afterImageId,
      limit,
    }: {
      imageType: ImageType;
      modelId: string;
      afterImageId: number;
      limit: number;
    }): Promise<GalleryRow[]> {
      return db
        .select({ ...galleryColumns, embedding: imageEmbeddings.embedding })
        .from(images)
        .innerJoin(products, eq(images.productId, products.productId))
        .leftJoin(defectTypes, eq(images.defectTypeId, defectTypes.defectTypeId))
        .leftJoin(
          imageEmbeddings,
          and(eq(imageEmbeddings.imageId, images.imageId), eq(imageEmbeddings.modelId, modelId)),
        )
        .where(and(eq(images.imageType, imageType), gt(images.imageId, afterImageId)))
        .orderBy(asc(images.imageId))
        .limit(limit);
    },

    /** Number of gallery images of `imageType`, and how many lack an embedding for `modelId`. */
    /** Gallery images with an embedding of `withModelId` and none of `modelId` (what a candidate lacks). */
    async countMissingEmbeddings(modelId: string, withModelId: string): Promise<number> {
      const { rows } = await db.execute(
        sql`select count(*)::int as n from ${imageEmbeddings} a where a.model_id = ${withModelId}
              and not exists (select 1 from ${imageEmbeddings} c where c.image_id = a.image_id and c.model_id = ${modelId})`,
      );
      return Number((rows[0] as { n: number } | undefined)?.n ?? 0);
    },

    async countGallery(imageType: ImageType, modelId: string): Promise<{ total: number; missing: number }> {
      const [row] = await db
        .select({
          total: sql<number>`count(*)::int`,
          missing: sql<number>`count(*) filter (where ${imageEmbeddings.imageId} is null)::int`,
        })
        .from(images)
        .leftJoin(
          imageEmbeddings,
          and(eq(imageEmbeddings.imageId, images.imageId), eq(imageEmbeddings.modelId, modelId)),
        )
        .where(eq(images.imageType, imageType));
      return { total: row?.total ?? 0, missing: row?.missing ?? 0 };
    },

    /** Every product with its gallery image counts, by product code. */
    async listProducts(): Promise<ProductCount[]> {
      return db
        .select({
          code: products.productCode,
          name: products.productName,
          imageCount: sql<number>`count(${images.imageId})::int`,
          defectCount: sql<number>`count(${images.imageId}) filter (where ${images.imageType} = 'defect')::int`,
          normalCount: sql<number>`count(${images.imageId}) filter (where ${images.imageType} = 'normal')::int`,
        })
        .from(products)
        .leftJoin(images, eq(images.productId, products.productId))
        .groupBy(products.productId)
        .orderBy(asc(products.productCode));
    },

    /** Every defect type with its gallery image count, by defect code. */
    async listDefectTypes(): Promise<LabelCount[]> {
      return db
        .select({
          code: defectTypes.defectCode,
          name: defectTypes.defectName,
          imageCount: sql<number>`count(${images.imageId})::int`,
        })
        .from(defectTypes)
        .leftJoin(images, eq(images.defectTypeId, defectTypes.defectTypeId))
        .groupBy(defectTypes.defectTypeId)
        .orderBy(asc(defectTypes.defectCode));
    },

    /**
     * One page of gallery images matching `filter`, by image id (keyset pagination), and how many match
     * in all.
     */
    async browseGallery(
      filter: GalleryBrowseFilter,
      { afterImageId, limit }: { afterImageId: number; limit: number },
    ): Promise<{ rows: BrowsedImage[]; total: number }> {
      const where: SQL[] = [];
      if (filter.productCode) where.push(eq(products.productCode, filter.productCode));
      if (filter.defectCode === "normal") where.push(isNull(images.defectTypeId));
      else if (filter.defectCode) where.push(eq(defectTypes.defectCode, filter.defectCode));
      if (filter.imageType) where.push(eq(images.imageType, filter.imageType));
      const [rows, [count]] = await Promise.all([
        browseSelect()
          .where(and(...where, gt(images.imageId, afterImageId)))
          .orderBy(asc(images.imageId))
          .limit(limit),
        db
          .select({ n: sql<number>`count(*)::int` })
          .from(images)
          .innerJoin(products, eq(images.productId, products.productId))
          .leftJoin(defectTypes, eq(images.defectTypeId, defectTypes.defectTypeId))
          .where(and(...where)),
      ]);
      return { rows, total: count?.n ?? 0 };
    },

    /** Gallery images by id, as the browser lists them (ids that do not exist are left out), by id. */
    async browseByIds(imageIds: readonly number[]): Promise<BrowsedImage[]> {
      if (imageIds.length === 0) return [];
      return browseSelect()
        .where(inArray(images.imageId, [...imageIds]))
        .orderBy(asc(images.imageId));
    },

    /** Images with an original in object storage and no thumbnail yet, by image id. */
    async imagesWithoutThumbnail(
      afterImageId: number,
      limit: number,
    ): Promise<{ imageId: number; storageUrl: string; contentSha256: string }[]> {
      const rows = await db
        .select({
          imageId: images.imageId,
          storageUrl: images.storageUrl,
          contentSha256: images.contentSha256,
        })
        .from(images)
        .where(
          and(isNull(images.thumbnailKey), isNotNull(images.storageUrl), gt(images.imageId, afterImageId)),
        )
        .orderBy(asc(images.imageId))
        .limit(limit);
      return rows.flatMap((r) => (r.storageUrl === null ? [] : [{ ...r, storageUrl: r.storageUrl }]));
    },

    /** Records that the thumbnail of `imageId` is stored under `key`. */
    async setThumbnailKey(imageId: number, key: string): Promise<void> {
      await db.update(images).set({ thumbnailKey: key }).where(eq(images.imageId, imageId));
    },

    /** Count and largest id of the gallery images of `imageType`: changes when images are added or deleted. */
    async galleryFingerprint(
      imageType: ImageType,
    ): Promise<{ count: number; maxImageId: number; labelsMd5: string }> {
      // The labels' hash makes a relabelled image (product or defect type changed) a different gallery:
      // the index metadata and any projection learned from the labels are then stale.
      const [row] = await db
        .select({
          count: sql<number>`count(*)::int`,
          maxImageId: sql<number>`coalesce(max(${images.imageId}), 0)::int`,
          labelsMd5: sql<string>`md5(coalesce(string_agg(${images.imageId}::text || ':' || ${products.productCode} || ':' || coalesce(${defectTypes.defectCode}, '-'), ',' order by ${images.imageId}), ''))`,
        })
        .from(images)
        .innerJoin(products, eq(products.productId, images.productId))
        .leftJoin(defectTypes, eq(defectTypes.defectTypeId, images.defectTypeId))
        .where(eq(images.imageType, imageType));
      return { count: row?.count ?? 0, maxImageId: row?.maxImageId ?? 0, labelsMd5: row?.labelsMd5 ?? "" };
    },
  };
}

/** The repository's type, derived from its factory. */
export type ImageRepository = ReturnType<typeof createImageRepository>;
