import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { ImageRepository } from "../db/images.repository.js";
import type { Embedder } from "../embedding/embedder.service.js";
import type { ImageInfo } from "../embedding/image.decoder.js";
import type { BlobStore } from "../storage/blob-store.js";
import { originalKey } from "../storage/original-key.js";
import { makeThumbnail, THUMBNAIL_CONTENT_TYPE, thumbnailKey } from "../thumbnails/thumbnail.js";
import { backfillThumbnails } from "../thumbnails/thumbnail-backfill.js";
import { type DatasetImage, humanizeCode } from "./dataset.reader.js";

/** Counts of an ingestion run, reported as it goes. */
export interface IngestProgress {
  total: number;
  imported: number;
  skipped: number;
  failed: number;
  /** Images imported before without an embedding of the current model (an interrupted run), embedded now. */
  repaired: number;
}

/** What an ingestion run did. */
export interface IngestSummary extends IngestProgress {
  /** Files not imported, with the reason. */
  failures: { file: string; reason: string }[];
  /** Time until every imported image was stored with its embedding, searchable after a rebuild (ms). */
  durationMs: number;
  /** Imported images per second of {@link durationMs}. */
  imagesPerSecond: number;
  /**
   * Thumbnails made (with the images, and by the pass that follows for images an earlier run left without
   * one), failed (left to the next backfill), and the time of that pass (ms; the thumbnails made with the
   * images are within {@link durationMs}). All zero when the run was asked to leave thumbnails to the
   * background backfill.
   */
  thumbnails: { made: number; failed: number; durationMs: number };
  /** Images whose nearest gallery image reached the near-duplicate similarity (with a check configured). */
  nearDuplicates: { file: string; neighbourImageId: number; similarity: number; skipped: boolean }[];
}

/** The near-duplicate check of an ingestion run: against the served indexes, kept current as it goes. */
export interface NearDuplicateCheck {
  /** The gallery image a new one duplicates (its bytes and raw embedding), or null. */
  find(bytes: Buffer, embedding: Float32Array): Promise<{ imageId: number; similarity: number } | null>;
  /** Leave near-duplicates out instead of importing them (and reporting the pair). */
  skip: boolean;
  /** Applies this run's writes to the indexes `nearest` searches, so later images are checked against them. */
  refresh(): Promise<void>;
  /** Records the pairs of imported near-duplicates for review. */
  record(pairs: { imageId: number; neighbourId: number; similarity: number }[]): Promise<void>;
}

const EXTENSION_BY_TYPE: Record<string, string> = {
  "image/jpeg": "jpg",
  "image/png": "png",
  "image/webp": "webp",
  "image/tiff": "tif",
  "image/gif": "gif",
  "image/avif": "avif",
  "image/heif": "heic",
};

/** Object key of an original: content-addressed, so re-uploading the same bytes is harmless. */
export function storageKeyFor(sha256: string, contentType: string): string {
  return originalKey(sha256, EXTENSION_BY_TYPE[contentType] ?? "bin");
}

/** Memoises a code -> id lookup; concurrent first calls share one promise. */
function idByCode(ensure: (code: string) => Promise<number>): (code: string) => Promise<number> {
  const ids = new Map<string, Promise<number>>();
  return (code) => {
    let id = ids.get(code);
    if (!id) {
      id = ensure(code);
      ids.set(code, id);
    }
    return id;
  };
}

/**
 * Imports labelled images into PostgreSQL + object storage + embeddings. Idempotent by content hash:
 * bytes imported before are skipped, so a re-run imports nothing twice.
 */
export function createIngestService({
  repository,
  blobStore,
  embedder,
  batchSize,
  logger,
}: {
  repository: ImageRepository;
  blobStore: BlobStore;
  embedder: Embedder;
  /** Files read, embedded and written per step. */
  batchSize: number;
  logger: Logger;
}) {
  const productId = idByCode((code) => repository.ensureProduct(code, humanizeCode(code)));
  const defectTypeId = idByCode((code) => repository.ensureDefectType(code, humanizeCode(code)));

  return {
    /**
     * Imports `images`.
     * @param onProgress - called after each step with running counts.
     * @param options.thumbnails - make the thumbnails of the images without one before returning (default):
     *   each new image's from the bytes in hand, stored with its row; false leaves them to the server's
     *   background backfill, which makes them once it serves.
     */
    async ingest(
      images: readonly DatasetImage[],
      onProgress: (p: IngestProgress) => void = () => {},
      nearCheck?: NearDuplicateCheck,
      { thumbnails = true }: { thumbnails?: boolean } = {},
    ): Promise<IngestSummary> {
      const t0 = performance.now();
      const progress: IngestProgress = {
        total: images.length,
        imported: 0,
        skipped: 0,
        failed: 0,
        repaired: 0,
      };
      const failures: IngestSummary["failures"] = [];
      const nearDuplicates: IngestSummary["nearDuplicates"] = [];
      const fail = (file: string, reason: string) => {
        failures.push({ file, reason });
        progress.failed++;
      };
      await blobStore.ensureBucket();
      let thumbnailsMade = 0;
      let pendingWrites: Promise<void> = Promise.resolve();

      /** The stored row of an image's texture descriptor, when the model gives one. */
      const textureRow = (imageId: number, texture: Float32Array | null) =>
        texture && embedder.textureModelId
          ? [{ imageId, modelId: embedder.textureModelId, embedding: texture }]
          : [];

      /** Uploads originals, then inserts their rows and embeddings in one statement each. */
      async function write(
        items: {
          img: DatasetImage;
          bytes: Buffer;
          sha256: string;
          embedding: Float32Array;
          texture: Float32Array | null;
          info: ImageInfo;
          /** Set when the row exists already and only its embedding is missing. */
          imageId?: number;
          /** Its nearest gallery image, when that is a near-duplicate. */
          near?: { neighbourId: number; similarity: number } | undefined;
          /** Its JPEG thumbnail, when one was made. */
          thumbnail: Buffer | null;
        }[],
      ) {
        const repairs = items.flatMap((i) =>
          i.imageId === undefined
            ? []
            : [{ imageId: i.imageId, modelId: embedder.modelId, embedding: i.embedding }],
        );
        const repairedTextures = items.flatMap((i) =>
          i.imageId === undefined ? [] : textureRow(i.imageId, i.texture),
        );
        try {
          await repository.saveEmbeddings([...repairs, ...repairedTextures]);
          progress.repaired += repairs.length;
        } catch (e) {
          for (const i of items.filter((x) => x.imageId !== undefined))
            fail(i.img.path, `database write failed: ${(e as Error).message}`);
        }
        items = items.filter((i) => i.imageId === undefined);
        // Originals first: a row never points at an object that is not there. A crash after an upload
        // leaves an object without a row, which the next run uploads again (same key) and records. The
        // thumbnail follows its original; one that fails to upload is left to the backfill.
        const uploaded = (
          await Promise.all(
            items.map(async (item) => {
              const key = storageKeyFor(item.sha256, item.info.contentType);
              try {
                await blobStore.put(key, item.bytes, item.info.contentType);
              } catch (e) {
                fail(item.img.path, `upload failed: ${(e as Error).message}`);
                return [];
              }
              let thumbKey: string | null = null;
              if (item.thumbnail) {
                try {
                  const thumbKeyOf = thumbnailKey(item.sha256);
                  await blobStore.put(thumbKeyOf, item.thumbnail, THUMBNAIL_CONTENT_TYPE);
                  thumbKey = thumbKeyOf;
                } catch (err) {
                  logger.warn(
                    { err, file: item.img.path },
                    "thumbnail not stored; the backfill makes it later",
                  );
                }
              }
              return [{ ...item, key, thumbKey }];
            }),
          )
        ).flat();
        let ids: Map<string, number>;
        try {
          const rows = await Promise.all(
            uploaded.map(async (u) => ({
              embedding: u.embedding,
              productId: await productId(u.img.productCode),
              defectTypeId: u.img.defectCode === null ? null : await defectTypeId(u.img.defectCode),
              imageType: u.img.imageType,
              filePath: u.img.path,
              storageUrl: blobStore.storageUrl(u.key),
              thumbnailKey: u.thumbKey,
              contentSha256: u.sha256,
              contentType: u.info.contentType,
              width: u.info.width,
              height: u.info.height,
              fileSizeBytes: u.bytes.length,
            })),
          );
          ids = await repository.insertImagesWithEmbeddings(rows, embedder.modelId);
          if (nearCheck) {
            const pairs = uploaded.flatMap((u) => {
              const imageId = ids.get(u.sha256);
              return imageId === undefined || !u.near ? [] : [{ imageId, ...u.near }];
            });
            await nearCheck
              .record(pairs)
              .catch((err) => logger.warn({ err }, "near-duplicate pairs not recorded"));
            await nearCheck.refresh();
          }
          progress.imported += ids.size;
          thumbnailsMade += uploaded.filter((u) => u.thumbKey !== null && ids.has(u.sha256)).length;
          // Same bytes imported concurrently (another process, or an earlier step) count as skipped.
          progress.skipped += uploaded.length - ids.size;
        } catch (e) {
          for (const u of uploaded) fail(u.img.path, `database write failed: ${(e as Error).message}`);
          return;
        }
        // After the rows, on their own: a texture missing after a failure here is computed by the next
        // rebuild that needs it, so it never fails an image that is stored and searchable.
        try {
          await repository.saveEmbeddings(
            uploaded.flatMap((u) => {
              const imageId = ids.get(u.sha256);
              return imageId === undefined ? [] : textureRow(imageId, u.texture);
            }),
          );
        } catch (e) {
          logger.warn({ err: e }, "texture descriptors not stored; the next rebuild computes them");
        }
      }
      /** Reads, hashes and embeds one step's images that are not stored with an embedding yet. */
      const prepare = async (step: readonly DatasetImage[]) => {
        const read = await Promise.all(
          step.map(async (img) => {
            try {
              const bytes = await readFile(img.path);
              return { img, bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
            } catch (e) {
              fail(img.path, (e as Error).message);
              return undefined;
            }
          }),
        );
        const existing = await repository.findExisting(
          read.flatMap((r) => (r ? [r.sha256] : [])),
          embedder.modelId,
        );
        const seen = new Set<string>();
        const fresh = read.flatMap((r) => {
          if (!r) return [];
          const known = existing.get(r.sha256);
          // Identical bytes twice in one folder (datasets have some) count as one image.
          if ((known?.embedded ?? false) || seen.has(r.sha256)) {
            progress.skipped++;
            return [];
          }
          seen.add(r.sha256);
          return [known ? { ...r, imageId: known.imageId } : r];
        });
        const embedding = embedder.embedMany(fresh.map((f) => f.bytes));
        // Made from the bytes in hand while the model runs, instead of read back from object storage
        // afterwards; queued after the first batch's decoding so inference starts as early as before.
        // A row that exists already (repaired) keeps its thumbnail, or gets one from the backfill. A file
        // over the embedder's limits gets none either: a decompression bomb is never decoded for one.
        const { maxBytes, maxPixels } = embedder.limits;
        const thumbnailing = Promise.all(
          fresh.map((f) =>
            !thumbnails || "imageId" in f || f.bytes.length > maxBytes
              ? null
              : makeThumbnail(f.bytes, maxPixels).catch((err: unknown) => {
                  logger.warn({ err, file: f.img.path }, "thumbnail not made; the backfill makes it later");
                  return null;
                }),
          ),
        );
        // Both awaited together: a failed embedding run rejects at once, never unhandled behind the thumbnails.
        const [outcomes, thumbs] = await Promise.all([embedding, thumbnailing]);
        return fresh.flatMap((f, i) => {
          const o = outcomes[i];
          const thumbnail = thumbs[i] ?? null;
          if (o?.ok) return [{ ...f, embedding: o.embedding, texture: o.texture, info: o.info, thumbnail }];
          fail(f.img.path, o?.error.message ?? "not embedded");
          return [];
        });
      };
      // Two steps are read and embedded at once: the next step's decoding (sharp, on libuv's threads)
      // overlaps this step's inference (the model's worker), which would otherwise leave a core idle.
      // Identical bytes in two such steps are both embedded; the row insert keeps one (counted as skipped).
      const steps: (readonly DatasetImage[])[] = [];
      for (let start = 0; start < images.length; start += batchSize)
        steps.push(images.slice(start, start + batchSize));
      const start = (step: readonly DatasetImage[]) => {
        const prepared = prepare(step);
        // Awaited in its turn; until then a failure (the database gone) must not count as unhandled.
        prepared.catch(() => {});
        return prepared;
      };
      const inFlight = steps.slice(0, 2).map(start);
      for (let k = 0; k < steps.length; k++) {
        const current = inFlight.shift() as ReturnType<typeof prepare>;
        const following = steps[k + 2];
        if (following) inFlight.push(start(following));
        let embedded = await current;
        // Writes of this step overlap reading and embedding the next ones; one step's writes at a time.
        await pendingWrites;
        if (nearCheck) {
          // After the previous step's write, so its images are among the neighbours.
          const checked = await Promise.all(
            embedded.map(async (e) => {
              if ("imageId" in e) return e;
              const n = await nearCheck.find(e.bytes, e.embedding);
              if (!n) return e;
              nearDuplicates.push({
                file: e.img.path,
                neighbourImageId: n.imageId,
                similarity: n.similarity,
                skipped: nearCheck.skip,
              });
              return nearCheck.skip
                ? null
                : { ...e, near: { neighbourId: n.imageId, similarity: n.similarity } };
            }),
          );
          const kept = checked.filter((e): e is NonNullable<typeof e> => e !== null);
          progress.skipped += embedded.length - kept.length;
          embedded = kept;
        }
        pendingWrites = write(embedded).then(() => onProgress({ ...progress }));
      }
      await pendingWrites;
      onProgress({ ...progress });
      const durationMs = performance.now() - t0;
      // Images an earlier run (or a failed thumbnail of this one) left without a thumbnail: read back from
      // object storage.
      const t1 = performance.now();
      const backfilled = thumbnails
        ? await backfillThumbnails({ repository, blobStore, logger })
        : { made: 0, failed: 0 };
      const thumbs = { made: thumbnailsMade + backfilled.made, failed: backfilled.failed };
      const summary = {
        ...progress,
        failures,
        nearDuplicates,
        durationMs,
        imagesPerSecond: progress.imported / Math.max(durationMs / 1000, 1e-9),
        thumbnails: { ...thumbs, durationMs: performance.now() - t1 },
      };
      logger.info({ ...summary, failures: failures.slice(0, 10) }, "ingestion finished");
      return summary;
    },
  };
}

/** The ingest service's type, derived from its factory. */
export type IngestService = ReturnType<typeof createIngestService>;
