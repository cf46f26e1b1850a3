/**
 * What the main thread hands the inference worker: the square the model sees, as 8-bit interleaved sRGB.
 * Turning it into the model's float tensor (scale to [0, 1], subtract the mean, divide by the std, planar
 * CHW) happens in the inference worker, so the main thread neither runs that loop (about 0.8 ms per
 * 224 x 224 image) nor copies and transfers four bytes per value instead of one.
 */

/**
 * One model input: `inputSize` x `inputSize` pixels, 3 bytes each (R, G, B), row-major (HWC), as
 * `preprocessImage` returns it. Length 3 x inputSize x inputSize.
 */
export type ModelInput = Uint8Array;

/** Per-channel normalisation of the model (the torchvision convention: `(x / 255 - mean) / std`). */
export interface Normalisation {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/**
 * The float value of every byte, per channel: one table lookup per value instead of a division and a
 * subtraction (the result is the same float32 the formula gives).
 * @returns 3 x 256 entries, channel-major.
 */
export function normalisationTable({ mean, std }: Normalisation): Float32Array {
  const table = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++)
    for (let v = 0; v < 256; v++) table[c * 256 + v] = (v / 255 - (mean[c] as number)) / (std[c] as number);
  return table;
}

/**
 * Writes `count` interleaved RGB squares of `size` x `size` from `pixels` as a planar float batch
 * `[count, 3, size, size]` into `out`.
 * @param table - from {@link normalisationTable}.
 * @throws Error when `pixels` does not hold `count` squares or `out` is too short.
 */
export function normaliseBatch(
  pixels: Uint8Array,
  count: number,
  size: number,
  table: Float32Array,
  out: Float32Array,
): void {
  const plane = size * size;
  if (pixels.length !== count * 3 * plane)
    throw new Error(`the batch has ${pixels.length} bytes, not ${count} x 3 x ${size} x ${size}`);
  if (out.length < count * 3 * plane) throw new Error("the float batch is too short");
  for (let n = 0; n < count; n++) {
    const base = n * 3 * plane;
    for (let i = 0, p = base; i < plane; i++, p += 3) {
      out[base + i] = table[pixels[p] as number] as number;
      out[base + plane + i] = table[256 + (pixels[p + 1] as number)] as number;
      out[base + 2 * plane + i] = table[512 + (pixels[p + 2] as number)] as number;
    }
  }
}

/**
 * A `size` x `size` window of an interleaved RGB image, copied out.
 * @param data - `width` pixels per row, 3 bytes per pixel.
 * @returns a {@link ModelInput} of length 3 x size x size.
 */
export function cropWindow(
  data: Uint8Array,
  width: number,
  size: number,
  left: number,
  top: number,
): ModelInput {
  const out = new Uint8Array(3 * size * size);
  for (let y = 0; y < size; y++) {
    const from = ((top + y) * width + left) * 3;
    out.set(data.subarray(from, from + 3 * size), y * 3 * size);
  }
  return out;
}
