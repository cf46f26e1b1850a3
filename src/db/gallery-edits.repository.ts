import { and, eq, gt, inArray, or, sql } from "drizzle-orm";
import type { ImageType } from "../shared/types.js";
import type { Database } from "./db.client.js";
import { defectTypes } from "./defect-types.table.js";
import { appendChanges } from "./gallery-change-log.js";
import { galleryChanges, nearDuplicates } from "./gallery-changes.table.js";
import { imageEmbeddings } from "./image-embeddings.table.js";
import {
  ensureDefectType,
  ensureProduct,
  type GalleryRow,
  galleryColumns,
  type NewImage,
} from "./images.repository.js";
import { images } from "./images.table.js";
import { products } from "./products.table.js";

export type { GalleryChangeKind } from "./gallery-change-log.js";

/** One image touched by the change log after a watermark, with its state now. */
export interface ChangedImage {
  imageId: number;
  /** The image as the database holds it now, with its embedding of the asked model; null once removed. */
  current: (Omit<GalleryRow, "embedding"> & { embedding: Float32Array | null }) | null;
}

/** A near-duplicate pair recorded at ingestion. */
export interface NearDuplicatePair {
  imageId: number;
  neighbourId: number;
  /** Cosine similarity of their raw embeddings. */
  similarity: number;
  modelId: string;
}

/**
 * The gallery's edits (add, relabel, remove), each one transaction with its change-log row, and the
 * change log as replicas read it.
 */
export function createGalleryEditsRepository({ db }: { db: Database }) {
  return {
    /** The newest change's `seq`, 0 when the log is empty: what a build records as its watermark. */
    async watermark(): Promise<number> {
      const [row] = await db
        .select({ seq: sql<number>`coalesce(max(${galleryChanges.seq}), 0)::bigint` })
        .from(galleryChanges);
      return Number(row?.seq ?? 0);
    },

    /**
     * Images the log touched after `seq`, each with its state now (the log says what to look at, the
     * tables what is true, so replaying is idempotent and order-free).
     * @returns the touched images and the newest `seq` read (`seq` itself when nothing is newer).
     */
    async changedSince(
      seq: number,
      modelId: string,
    ): Promise<{ watermark: number; changed: ChangedImage[] }> {
      const touched = await db
        .select({ imageId: galleryChanges.imageId, last: sql<number>`max(${galleryChanges.seq})::bigint` })
        .from(galleryChanges)
        .where(gt(galleryChanges.seq, seq))
        .groupBy(galleryChanges.imageId);
      if (touched.length === 0) return { watermark: seq, changed: [] };
      const watermark = touched.reduce((m, t) => Math.max(m, Number(t.last)), seq);
      const ids = touched.map((t) => t.imageId);
      const rows = await db
        .select({ ...galleryColumns, embedding: imageEmbeddings.embedding })
        .from(images)
        .innerJoin(products, eq(images.productId, products.productId))
        .leftJoin(defectTypes, eq(images.defectTypeId, defectTypes.defectTypeId))
        .leftJoin(
          imageEmbeddings,
          and(eq(imageEmbeddings.imageId, images.imageId), eq(imageEmbeddings.modelId, modelId)),
        )
        .where(inArray(images.imageId, ids));
      const byId = new Map(rows.map((r) => [r.imageId, r]));
      return { watermark, changed: ids.map((imageId) => ({ imageId, current: byId.get(imageId) ?? null })) };
    },

    /** The image id holding these bytes, if any. */
    async imageIdBySha256(sha256: string): Promise<number | undefined> {
      const [row] = await db
        .select({ imageId: images.imageId })
        .from(images)
        .where(eq(images.contentSha256, sha256));
      return row?.imageId;
    },

    /**
     * Adds one image with its embeddings, its near-duplicate pair (if any) and its change-log row, in one
     * transaction; products and defect types are created on first use.
     * @returns the new image id, or `{ duplicateOf }` when the same bytes are already in the gallery.
     */
    async addImage({
      image,
      productCode,
      productName,
      defectCode,
      defectName,
      embeddings,
      nearDuplicate,
      changedBy,
    }: {
      image: Omit<NewImage, "productId" | "defectTypeId" | "imageType">;
      productCode: string;
      productName: string;
      /** null for a normal image. */
      defectCode: string | null;
      defectName: string | null;
      /** The model's embedding (and the texture descriptor's, when there is one). */
      embeddings: readonly { modelId: string; embedding: Float32Array }[];
      nearDuplicate: { neighbourId: number; similarity: number; modelId: string } | null;
      changedBy: string;
    }): Promise<{ imageId: number } | { duplicateOf: number }> {
      return db.transaction(async (tx) => {
        const productId = await ensureProduct(tx, productCode, productName);
        const defectTypeId =
          defectCode === null ? null : await ensureDefectType(tx, defectCode, defectName ?? defectCode);
        const [inserted] = await tx
          .insert(images)
          .values({ ...image, productId, defectTypeId, imageType: defectCode === null ? "normal" : "defect" })
          .onConflictDoNothing({ target: images.contentSha256 })
          .returning({ imageId: images.imageId });
        if (!inserted) {
          const [existing] = await tx
            .select({ imageId: images.imageId })
            .from(images)
            .where(eq(images.contentSha256, image.contentSha256));
          return { duplicateOf: existing?.imageId ?? -1 };
        }
        const imageId = inserted.imageId;
        if (embeddings.length > 0)
          await tx
            .insert(imageEmbeddings)
            .values(embeddings.map((e) => ({ ...e, imageId, dimension: e.embedding.length })));
        if (nearDuplicate)
          await tx
            .insert(nearDuplicates)
            .values({ imageId, ...nearDuplicate })
            .onConflictDoNothing();
        await appendChanges(tx, [{ imageId, kind: "add" }], changedBy);
        return { imageId };
      });
    },

    /**
     * Gives an image another product and defect type (null: normal, which moves it to the normal index).
     * @returns false when there is no such image.
     */
    async relabelImage({
      imageId,
      productCode,
      productName,
      defectCode,
      defectName,
      changedBy,
    }: {
      imageId: number;
      productCode: string;
      productName: string;
      defectCode: string | null;
      defectName: string | null;
      changedBy: string;
    }): Promise<boolean> {
      return db.transaction(async (tx) => {
        const productId = await ensureProduct(tx, productCode, productName);
        const defectTypeId =
          defectCode === null ? null : await ensureDefectType(tx, defectCode, defectName ?? defectCode);
        const imageType: ImageType = defectCode === null ? "normal" : "defect";
        const updated = await tx
          .update(images)
          .set({ productId, defectTypeId, imageType })
          .where(eq(images.imageId, imageId))
          .returning({ imageId: images.imageId });
        if (updated.length === 0) return false;
        await appendChanges(tx, [{ imageId, kind: "relabel" }], changedBy);
        return true;
      });
    },

    /**
     * Deletes an image's row with its embeddings and near-duplicate pairs (cascade), logging the removal.
     * @returns the object keys' sources of the removed image (to delete its original and thumbnail), or
     *   undefined when there is no such image.
     */
    async removeImage(
      imageId: number,
      changedBy: string,
    ): Promise<{ storageUrl: string | null; thumbnailKey: string | null } | undefined> {
      return db.transaction(async (tx) => {
        const [removed] = await tx
          .delete(images)
          .where(eq(images.imageId, imageId))
          .returning({ storageUrl: images.storageUrl, thumbnailKey: images.thumbnailKey });
        if (!removed) return undefined;
        await appendChanges(tx, [{ imageId, kind: "remove" }], changedBy);
        return removed;
      });
    },

    /** Near-duplicate pairs to review, best similarity first (at most `limit`). */
    async nearDuplicatePairs(limit: number): Promise<NearDuplicatePair[]> {
      return db
        .select({
          imageId: nearDuplicates.imageId,
          neighbourId: nearDuplicates.neighbourId,
          similarity: nearDuplicates.similarity,
          modelId: nearDuplicates.modelId,
        })
        .from(nearDuplicates)
        .orderBy(sql`${nearDuplicates.similarity} desc`)
        .limit(limit);
    },

    /** Records near-duplicate pairs (an existing pair is kept). */
    async saveNearDuplicates(pairs: readonly NearDuplicatePair[]): Promise<void> {
      if (pairs.length === 0) return;
      await db
        .insert(nearDuplicates)
        .values([...pairs])
        .onConflictDoNothing();
    },

    /**
     * Marks an image's near-duplicate pairs as reviewed ("keep both"): they are no longer listed.
     * @returns the number of pairs dismissed.
     */
    async dismissNearDuplicates(imageId: number): Promise<number> {
      const gone = await db
        .delete(nearDuplicates)
        .where(or(eq(nearDuplicates.imageId, imageId), eq(nearDuplicates.neighbourId, imageId)))
        .returning({ imageId: nearDuplicates.imageId });
      return gone.length;
    },
  };
}

/** The repository's type, derived from its factory. */
export type GalleryEditsRepository = ReturnType<typeof createGalleryEditsRepository>;
