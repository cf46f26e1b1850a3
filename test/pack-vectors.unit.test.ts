import { setImmediate } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { packVectors, packVectorsYielding } from "../src/matchers/gallery-source.js";

describe("packVectorsYielding", () => {
  const dimension = 1280;
  const rows = Array.from({ length: 2100 }, (_, i) => {
    const v = new Float32Array(dimension);
    for (let j = 0; j < dimension; j++) v[j] = Math.sin(i * 31 + j);
    return v;
  });
  const bytes = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

  it("packs exactly what packVectors packs, into a buffer of exactly that size", async () => {
    const packed = await packVectorsYielding(rows, dimension);
    expect(packed.length).toBe(rows.length * dimension);
    expect(packed.buffer.byteLength).toBe(rows.length * dimension * 4);
    // Byte for byte (a deep equality over 2.7 million elements would take vitest seconds).
    expect(bytes(packed).equals(bytes(packVectors(rows, dimension)))).toBe(true);
    expect(await packVectorsYielding([], dimension)).toEqual(new Float32Array(0));
  });

  it("lets the event loop run while it packs a large gallery", async () => {
    // Something queued behind the packing, as a search's callback would be: it runs before the packing
    // ends when the packing yields (2,100 rows: after rows 1,024 and 2,048), and only after it otherwise.
    const turns: string[] = [];
    const other = setImmediate().then(() => turns.push("other"));
    await packVectorsYielding(rows, dimension).then(() => turns.push("packed"));
    await other;
    expect(turns).toEqual(["other", "packed"]);
  });
});
