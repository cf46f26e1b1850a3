import type { Logger } from "pino";
import type { ImageRepository } from "../db/images.repository.js";
import type { BlobStore } from "../storage/blob-store.js";
import { makeThumbnail, THUMBNAIL_CONTENT_TYPE, thumbnailKey } from "./thumbnail.js";

/** What a backfill run did. */
export interface ThumbnailBackfillSummary {
  made: number;
  failed: number;
}

const PAGE = 64;

/**
 * Makes the missing thumbnails of gallery images whose original is in object storage (images ingested
 * before thumbnails existed, or whose thumbnail failed): reads each original, stores its thumbnail and
 * records the key. Images that fail are logged and left for the next run.
 * @param signal - stops the run between pages (shutdown).
 */
export async function backfillThumbnails({
  repository,
  blobStore,
  logger,
  signal,
}: {
  repository: ImageRepository;
  blobStore: BlobStore;
  logger: Logger;
  signal?: AbortSignal;
}): Promise<ThumbnailBackfillSummary> {
  const summary: ThumbnailBackfillSummary = { made: 0, failed: 0 };
  let after = 0;
  while (!signal?.aborted) {
    const page = await repository.imagesWithoutThumbnail(after, PAGE);
    if (page.length === 0) break;
    after = page.at(-1)?.imageId ?? after;
    await Promise.all(
      page.map(async (img) => {
        try {
          const original = blobStore.keyFromStorageUrl(img.storageUrl);
          const bytes = original ? await blobStore.get(original) : undefined;
          if (!bytes) throw new Error(`original ${img.storageUrl} is not in the bucket`);
          const key = thumbnailKey(img.contentSha256);
          await blobStore.put(key, await makeThumbnail(bytes), THUMBNAIL_CONTENT_TYPE);
          await repository.setThumbnailKey(img.imageId, key);
          summary.made++;
        } catch (err) {
          summary.failed++;
          logger.warn({ err, imageId: img.imageId }, "thumbnail backfill failed for an image");
        }
      }),
    );
  }
  if (summary.made + summary.failed > 0) logger.info(summary, "thumbnail backfill finished");
  return summary;
}
