import sharp, { type Metadata } from "sharp";

/** Longest side of a thumbnail (pixels): sharp enough for a 2x-density grid cell of 128 CSS pixels. */
export const THUMBNAIL_MAX_SIDE = 256;

/** Content type of every thumbnail. */
export const THUMBNAIL_CONTENT_TYPE = "image/jpeg";

/**
 * Object key of the thumbnail of the original with content hash `sha256` (hex), beside the originals'
 * `images/<2 hex>/` layout, so a thumbnail is found from the hash alone.
 */
export const thumbnailKey = (sha256: string) => `thumbnails/${sha256.slice(0, 2)}/${sha256}.jpg`;

/**
 * Largest original (bytes) that is served as its own thumbnail; 256x256 at JPEG quality 80 is 15-25 KB, so
 * anything this size or under costs a grid no more than a re-encoded thumbnail would.
 */
export const ORIGINAL_AS_THUMBNAIL_MAX_BYTES = 64 * 1024;

/**
 * Whether an image shows as {@link makeThumbnail}'s output would: a JPEG without EXIF rotation or an
 * embedded colour profile, in sRGB or greyscale, fitted inside {@link THUMBNAIL_MAX_SIDE} pixels, and no
 * larger than {@link ORIGINAL_AS_THUMBNAIL_MAX_BYTES} (its other metadata, which a re-encode would strip,
 * stays). Decoding and encoding it again would only cost CPU (1.3-2 ms per image on one thread for the
 * shared datasets' 128-200 pixel crops) and lose quality.
 */
function servesAsThumbnail(bytes: Buffer, meta: Metadata): boolean {
  return (
    meta.format === "jpeg" &&
    (meta.orientation ?? 1) === 1 &&
    !meta.hasProfile &&
    (meta.space === "srgb" || meta.space === "b-w") &&
    (meta.width ?? Number.POSITIVE_INFINITY) <= THUMBNAIL_MAX_SIDE &&
    (meta.height ?? Number.POSITIVE_INFINITY) <= THUMBNAIL_MAX_SIDE &&
    bytes.length <= ORIGINAL_AS_THUMBNAIL_MAX_BYTES
  );
}

/**
 * A JPEG thumbnail of an image: EXIF-oriented, fitted inside {@link THUMBNAIL_MAX_SIDE} pixels, never
 * enlarged, transparency flattened on white. An image that is such a JPEG already is its own thumbnail
 * (the same bytes, returned without decoding its pixels). sharp runs on libuv's thread pool, so the event
 * loop only waits for it. JPEG rather than WebP because ingestion is CPU-bound and WebP costs twice as much:
 * 4.2 against 2.0 ms per image on one thread, decode included, over 120 images of the three shared datasets.
 * @param maxPixels - refuse inputs larger than this (width x height); ingestion passes MAX_IMAGE_PIXELS.
 * @throws Error from sharp when the bytes are not a decodable image.
 */
export async function makeThumbnail(bytes: Buffer, maxPixels = 100_000_000): Promise<Buffer> {
  const image = sharp(bytes, { limitInputPixels: maxPixels });
  if (servesAsThumbnail(bytes, await image.metadata())) return bytes;
  return image
    .rotate()
    .resize(THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE, { fit: "inside", withoutEnlargement: true })
    .flatten({ background: "#ffffff" })
    .jpeg({ quality: 80 })
    .toBuffer();
}
