import { describe, expect, it } from "vitest";
import { cropWindow, normalisationTable, normaliseBatch } from "../src/embedding/model-input.js";

describe("model input", () => {
  const norm = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } as const;

  it("normalises interleaved bytes into planar floats exactly as (x / 255 - mean) / std", () => {
    const size = 5;
    const count = 2;
    const pixels = Uint8Array.from({ length: count * 3 * size * size }, (_, i) => (i * 37) % 256);
    const out = new Float32Array(count * 3 * size * size);
    normaliseBatch(pixels, count, size, normalisationTable(norm), out);
    const plane = size * size;
    for (let n = 0; n < count; n++)
      for (let i = 0; i < plane; i++)
        for (let c = 0; c < 3; c++) {
          const byte = pixels[n * 3 * plane + 3 * i + c] as number;
          const expected = Math.fround((byte / 255 - (norm.mean[c] as number)) / (norm.std[c] as number));
          expect(out[n * 3 * plane + c * plane + i]).toBe(expected);
        }
  });

  it("refuses a batch of another length", () => {
    expect(() =>
      normaliseBatch(new Uint8Array(10), 1, 5, normalisationTable(norm), new Float32Array(75)),
    ).toThrow(/not 1 x 3 x 5 x 5/);
  });

  it("copies a window out of a larger image", () => {
    const width = 4;
    const data = Uint8Array.from({ length: width * 4 * 3 }, (_, i) => i);
    const w = cropWindow(data, width, 2, 1, 2);
    // Rows 2 and 3, pixels 1 and 2.
    const px = (x: number, y: number) => [0, 1, 2].map((c) => (y * width + x) * 3 + c);
    expect(Array.from(w)).toEqual([...px(1, 2), ...px(2, 2), ...px(1, 3), ...px(2, 3)]);
  });
});
