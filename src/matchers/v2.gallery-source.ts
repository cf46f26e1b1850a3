import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { GalleryEditsRepository } from "../db/gallery-edits.repository.js";
import type { GalleryRow, ImageRepository } from "../db/images.repository.js";
import type { Embedder } from "../embedding/embedder.service.js";
import type { GalleryEntry } from "../index/gallery-entry.js";
import type { ImageType } from "../shared/types.js";
import type { BlobStore } from "../storage/blob-store.js";
import {
  type CollectedGallery,
  type GalleryProgress,
  type GallerySource,
  packVectorsYielding,
} from "./gallery-source.js";

/** What a collection needs of an embedder: the embeddings of one model id. */
type VectorSource = Pick<Embedder, "modelId" | "dimension" | "embedMany">;

/** Rows per database page; bounds memory and keeps progress moving. */
const PAGE = 2000;
/** Missing embeddings computed per step. */
const EMBED_STEP = 64;

/**
 * V2 gallery: rows of `images` joined with products and defect types, with their stored embeddings.
 * Images without an embedding for the current model are fetched (object storage, else the local path),
 * embedded and stored, so each image is embedded once per model.
 */
export function createV2GallerySource({
  repository,
  edits,
  blobStore,
  embedder,
  logger,
}: {
  repository: ImageRepository;
  /** The change log; without it, served indexes change only by rebuilds. */
  edits?: GalleryEditsRepository | undefined;
  blobStore: BlobStore;
  embedder: Embedder;
  logger: Logger;
}): GallerySource {
  /** Texture descriptors stored and computed like embeddings, under the texture model id. */
  const textureId = embedder.textureModelId;
  const textureEmbedder: VectorSource | undefined = textureId
    ? {
        modelId: textureId,
        dimension: embedder.textureDimension,
        async embedMany(items) {
          const outcomes = await embedder.embedMany(items);
          return outcomes.map((o) =>
            o.ok && o.texture
              ? { ...o, embedding: o.texture }
              : o.ok
                ? { ok: false, error: new Error("the model gave no texture descriptor") }
                : o,
          );
        },
      }
    : undefined;

  async function fetchBytes(row: GalleryRow): Promise<Buffer> {
    const key = row.storageUrl ? blobStore.keyFromStorageUrl(row.storageUrl) : undefined;
    if (key) {
      const bytes = await blobStore.get(key);
      if (bytes) return bytes;
    }
    if (row.filePath) return readFile(row.filePath);
    throw new Error(
      `image ${row.imageId}: original not found (storage_url ${row.storageUrl ?? "null"}, no file_path)`,
    );
  }

  return {
    version: "v2",
    description: "database",
    async fingerprint(imageType) {
      const { count, maxImageId, labelsMd5 } = await repository.galleryFingerprint(imageType);
      return `count=${count};maxImageId=${maxImageId};labels=${labelsMd5.slice(0, 16)}`;
    },
    collect: (imageType, onProgress) => collectWith(embedder, imageType, onProgress),
    changes: edits
      ? {
          watermark: () => edits.watermark(),
          async since(seq) {
            const { watermark, changed } = await edits.changedSince(seq, embedder.modelId);
            return {
              watermark,
              changed: changed.map(({ imageId, current }) => {
                if (!current || current.embedding?.length !== embedder.dimension)
                  return { imageId, current: null };
                const { embedding, ...entry } = current;
                return { imageId, current: { entry, embedding } };
              }),
            };
          },
        }
      : undefined,
    textureModelId: textureId,
    collectTextures: textureEmbedder
      ? (imageType, onProgress, keep) => collectWith(textureEmbedder, imageType, onProgress, keep)
      : undefined,
  };

  async function collectWith(
    embedder: VectorSource,
    imageType: ImageType,
    onProgress: (p: GalleryProgress) => void,
    /** Only these images are embedded if missing and returned (a sample); default all. */
    keep?: (imageId: number) => boolean,
  ): Promise<CollectedGallery> {
    const { total } = await repository.countGallery(imageType, embedder.modelId);
    const progress = { total, processed: 0, newlyEmbedded: 0, failed: 0 };
    onProgress({ ...progress });
    const entries: GalleryEntry[] = [];
    const vectors: Float32Array[] = [];
    const failures: CollectedGallery["failures"] = [];
    let after = 0;
    for (;;) {
      const listed = await repository.listGalleryPage({
        imageType,
        modelId: embedder.modelId,
        afterImageId: after,
        limit: PAGE,
      });
      if (listed.length === 0) break;
      after = listed[listed.length - 1]?.imageId ?? after;
      const page = keep ? listed.filter((r) => keep(r.imageId)) : listed;
      progress.processed += listed.length - page.length;
      const missing = page.filter((r) => r.embedding === null);
      for (let i = 0; i < missing.length; i += EMBED_STEP) {
        const step = missing.slice(i, i + EMBED_STEP);
        const fetched = await Promise.all(
          step.map(async (row) => {
            try {
              return await fetchBytes(row);
            } catch (e) {
              return e as Error;
            }
          }),
        );
        const readable = step.flatMap((row, k) => {
          const f = fetched[k];
          if (f instanceof Buffer) return [{ row, bytes: f }];
          failures.push({
            item: `image ${row.imageId}`,
            reason: (f as Error | undefined)?.message ?? "unreadable",
          });
          return [];
        });
        const outcomes = await embedder.embedMany(readable.map((r) => r.bytes));
        const toSave = readable.flatMap(({ row }, k) => {
          const o = outcomes[k];
          if (o?.ok) {
            row.embedding = o.embedding;
            return [{ imageId: row.imageId, modelId: embedder.modelId, embedding: o.embedding }];
          }
          failures.push({ item: `image ${row.imageId}`, reason: o?.error.message ?? "not embedded" });
          return [];
        });
        await repository.saveEmbeddings(toSave);
        progress.newlyEmbedded += toSave.length;
        progress.failed = failures.length;
        progress.processed += step.length;
        onProgress({ ...progress });
      }
      for (const row of page) {
        if (row.embedding === null) continue;
        if (row.embedding.length !== embedder.dimension) {
          failures.push({
            item: `image ${row.imageId}`,
            reason: `stored embedding has ${row.embedding.length} dims`,
          });
          continue;
        }
        vectors.push(row.embedding);
        const { embedding: _vector, ...meta } = row;
        entries.push(meta);
      }
      progress.processed += page.length - missing.length;
      progress.failed = failures.length;
      onProgress({ ...progress });
    }
    if (failures.length > 0)
      logger.warn({ failures: failures.slice(0, 20), count: failures.length }, "V2 gallery images skipped");
    return { entries, vectors: await packVectorsYielding(vectors, embedder.dimension), failures };
  }
}
