import sharp, { type Metadata } from "sharp";
import type { ModelConfig } from "../config/config.js";
import { errors } from "../shared/errors.js";
import { cropWindow, type ModelInput } from "./model-input.js";
import { tileOrigins } from "./multi-view.js";

/** What the header of an accepted image says. */
export interface ImageInfo {
  /** sharp's format name: jpeg, png, webp, tiff, gif, ... */
  format: string;
  /** Pixels, after EXIF orientation is applied. */
  width: number;
  height: number;
  /** MIME type to store the original with. */
  contentType: string;
}

/** Limits applied before any pixel is decoded. */
export interface ImageLimits {
  /** Largest accepted encoded size (bytes). */
  maxBytes: number;
  /** Largest accepted width x height (pixels): guards against decompression bombs. */
  maxPixels: number;
  /** Shortest accepted side (pixels); smaller images carry too little to compare. Default 1. */
  minSide?: number;
}

const SUPPORTED_FORMATS: Record<string, string> = {
  jpeg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  tiff: "image/tiff",
  gif: "image/gif",
  avif: "image/avif",
  heif: "image/heif",
};

/**
 * Reads only the image header and checks it against the limits.
 * @throws DomainError IMAGE_TOO_LARGE when bytes or pixel count exceed the limits (nothing is decoded),
 *   IMAGE_TOO_SMALL when a side is under `minSide`, INVALID_IMAGE_FORMAT when the bytes are not an image of a supported format.
 */
export async function inspectImage(bytes: Buffer, limits: ImageLimits): Promise<ImageInfo> {
  if (bytes.length === 0) throw errors.invalidImage("The image is empty (0 bytes).");
  if (bytes.length > limits.maxBytes) {
    throw errors.imageTooLarge(
      `The image is ${bytes.length} bytes; the limit is ${limits.maxBytes} bytes. Send a smaller or more compressed image.`,
      { sizeBytes: bytes.length, maxBytes: limits.maxBytes },
    );
  }
  let meta: Metadata;
  try {
    // limitInputPixels false: the pixel check below gives a clearer error than sharp's.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw errors.invalidImage(
      `The data is not a readable image (${(e as Error).message}). Supported formats: ${Object.keys(SUPPORTED_FORMATS).join(", ")}.`,
      e,
    );
  }
  const contentType = meta.format ? SUPPORTED_FORMATS[meta.format] : undefined;
  if (!contentType || !meta.width || !meta.height) {
    throw errors.invalidImage(
      `Unsupported image format '${meta.format ?? "unknown"}'. Supported formats: ${Object.keys(SUPPORTED_FORMATS).join(", ")}.`,
    );
  }
  const pixels = meta.width * meta.height;
  if (pixels > limits.maxPixels) {
    throw errors.imageTooLarge(
      `The image is ${meta.width}x${meta.height} = ${pixels} pixels; the limit is ${limits.maxPixels} pixels. Downscale it before searching.`,
      { width: meta.width, height: meta.height, maxPixels: limits.maxPixels },
    );
  }
  const minSide = limits.minSide ?? 1;
  if (Math.min(meta.width, meta.height) < minSide) {
    throw errors.imageTooSmall(
      `The image is ${meta.width}x${meta.height} pixels; both sides must be at least ${minSide} pixels (MIN_IMAGE_SIDE). Send the full photo, or a larger crop.`,
    );
  }
  const rotated = (meta.orientation ?? 1) >= 5;
  return {
    format: meta.format ?? "unknown",
    width: rotated ? meta.height : meta.width,
    height: rotated ? meta.width : meta.height,
    contentType,
  };
}

/**
 * Decodes and preprocesses one image for the model: EXIF auto-orient, sRGB 3 channels, made square by
 * `model.resizeMode` (`crop`: shorter side to `resizeShorterSide`, centre `inputSize` square, the torchvision
 * `Resize` + `CenterCrop` convention; `fill`: the whole image resized to the square; `pad`: the whole image
 * letterboxed on the model's mean colour). Scaling, mean and std and the planar layout are applied in the
 * inference worker (`model-input.ts`).
 * @param info - the result of {@link inspectImage} on the same bytes.
 * @returns a {@link ModelInput}: 3 x inputSize x inputSize bytes, interleaved RGB, row-major.
 * @throws DomainError INVALID_IMAGE_FORMAT when the pixel data cannot be decoded (truncated, corrupt).
 */
export async function preprocessImage(
  bytes: Buffer,
  info: ImageInfo,
  model: ModelConfig,
): Promise<ModelInput> {
  const size = model.inputSize;
  return decodeSquare(bytes, info, model.resizeShorterSide, size, model);
}

/**
 * Decodes an image to interleaved 8-bit sRGB `size` x `size` square, EXIF auto-oriented and resized with
 * `model.resizeKernel`: with `model.resizeMode` `crop`, shorter side resized to `shorterSide` (aspect kept)
 * and the centre square cut; with `fill`, the whole image resized to the square; with `pad`, the whole image
 * fitted inside the square on the model's mean colour (zero after normalisation: the padding carries no
 * signal).
 * @returns `size` x `size` x 3 bytes, row-major.
 * @throws DomainError INVALID_IMAGE_FORMAT when the pixel data cannot be decoded (truncated, corrupt).
 */
async function decodeSquare(
  bytes: Buffer,
  info: ImageInfo,
  shorterSide: number,
  size: number,
  model: ModelConfig,
): Promise<Buffer> {
  const fill = model.resizeMode !== "crop";
  const scale = shorterSide / Math.min(info.width, info.height);
  const width = fill ? size : Math.max(shorterSide, Math.round(info.width * scale));
  const height = fill ? size : Math.max(shorterSide, Math.round(info.height * scale));
  try {
    const out = await sharp(bytes, { limitInputPixels: false, failOn: "error" })
      .rotate()
      .resize(
        model.resizeMode === "pad"
          ? {
              width: size,
              height: size,
              fit: "contain",
              background: padColour(model),
              kernel: model.resizeKernel,
            }
          : { width, height, fit: "fill", kernel: model.resizeKernel },
      )
      .extract({
        left: Math.round((width - size) / 2),
        top: Math.round((height - size) / 2),
        width: size,
        height: size,
      })
      .toColourspace("srgb")
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (out.info.channels !== 3) throw new Error(`expected 3 channels, got ${out.info.channels}`);
    return out.data;
  } catch (e) {
    throw errors.invalidImage(
      `The image could not be decoded (${(e as Error).message}); it may be truncated or corrupt.`,
      e,
    );
  }
}

/** The model's per-channel mean as an 8-bit colour: a pixel that normalises to zero. */
const padColour = (model: ModelConfig) => {
  const [r, g, b] = model.mean.map((m) => Math.round(m * 255)) as [number, number, number];
  return { r, g, b };
};

/**
 * The model inputs of one image under `model.views`: the whole image ({@link preprocessImage}), then,
 * when the grid is larger than 1, `grid` x `grid` tiles of `inputSize` cut row by row from a
 * `views.size` square (made square as the whole image is, by `model.resizeMode`), evenly overlapping
 * ({@link tileOrigins}).
 * @returns {@link viewCount} inputs, each as {@link preprocessImage} returns; the whole image first.
 * @throws DomainError INVALID_IMAGE_FORMAT when the pixel data cannot be decoded.
 */
export async function preprocessViews(
  bytes: Buffer,
  info: ImageInfo,
  model: ModelConfig,
): Promise<ModelInput[]> {
  const whole = await preprocessImage(bytes, info, model);
  const { grid, size } = model.views;
  if (grid < 2) return [whole];
  const origins = tileOrigins({ grid, size, tile: model.inputSize });
  const data = await decodeSquare(bytes, info, size, size, model);
  const views = [whole];
  for (const top of origins)
    for (const left of origins) views.push(cropWindow(data, size, model.inputSize, left, top));
  return views;
}
