import type { GalleryEntry } from "../index/gallery-entry.js";
import type { BlobStore } from "../storage/blob-store.js";
import { thumbnailKey } from "../thumbnails/thumbnail.js";

/**
 * Download and thumbnail URLs of search hits, presigned only when a client asks for them (the GraphQL
 * fields `downloadUrl`, `thumbnailUrl`), so a search that does not show images signs nothing.
 */
export function createHitUrls({
  blobStore,
  presignExpirySeconds,
}: {
  blobStore: BlobStore;
  /** Lifetime of each presigned URL (s). */
  presignExpirySeconds: number;
}) {
  /** Object key of an entry's original, when it is in the service's bucket. */
  const originalKeyOf = (entry: GalleryEntry) =>
    entry.storageUrl ? blobStore.keyFromStorageUrl(entry.storageUrl) : undefined;

  return {
    /** Presigned GET URL of a hit's original, when it is in object storage; null otherwise (V1). */
    downloadUrl(entry: GalleryEntry): Promise<string | null> {
      const key = originalKeyOf(entry);
      return key ? blobStore.presignedGetUrl(key, presignExpirySeconds) : Promise.resolve(null);
    },

    /**
     * Presigned GET URL of a hit's thumbnail, when its original is in object storage; null otherwise (V1).
     * Thumbnails are content-addressed like originals, so no lookup is needed to name one.
     */
    thumbnailUrl(entry: GalleryEntry): Promise<string | null> {
      return originalKeyOf(entry) && entry.contentSha256
        ? blobStore.presignedGetUrl(thumbnailKey(entry.contentSha256), presignExpirySeconds)
        : Promise.resolve(null);
    },
  };
}
