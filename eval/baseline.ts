import sharp from "sharp";
import { l2NormalizeInPlace } from "../src/embedding/embedding.model.js";

/** Side of the baseline thumbnail (pixels); the vector has side x side elements. */
export const THUMBNAIL_SIDE = 16;

/**
 * The trivial baseline feature: the image as a 16x16 greyscale thumbnail (EXIF-oriented, area resize of
 * the whole image), mean subtracted and L2-normalised, so cosine similarity is the correlation of two
 * thumbnails. Any learned embedding should beat it clearly.
 * @throws Error from sharp when the image cannot be decoded.
 */
export async function thumbnailVector(bytes: Buffer): Promise<Float32Array> {
  const raw = await sharp(bytes)
    .rotate()
    .removeAlpha()
    .greyscale()
    .resize(THUMBNAIL_SIDE, THUMBNAIL_SIDE, { fit: "fill", kernel: "linear" })
    .raw()
    .toBuffer();
  const v = new Float32Array(THUMBNAIL_SIDE * THUMBNAIL_SIDE);
  let mean = 0;
  for (let i = 0; i < v.length; i++) mean += raw[i] as number;
  mean /= v.length;
  for (let i = 0; i < v.length; i++) v[i] = (raw[i] as number) - mean;
  // A flat image has no direction; give it a fixed one rather than dropping it.
  if (!l2NormalizeInPlace(v)) v.fill(1 / Math.sqrt(v.length));
  return v;
}
