import { setImmediate } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { VECTOR_CHUNK_ROWS } from "../src/index/faiss/faiss.protocol.js";
import { chunkRows } from "../src/index/faiss/faiss-worker.backend.js";
import { packVectors, packVectorsYielding } from "../src/matchers/gallery-source.js";

const bytes = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

/**
 * The order in which `work` and something queued behind it (as a search's callback would be) finish: the
 * other first when `work` hands the event loop back while it runs, `work` first otherwise.
 */
async function turnOrder(work: () => Promise<unknown>): Promise<string[]> {
  const turns: string[] = [];
  const other = setImmediate().then(() => turns.push("other"));
  await work().then(() => turns.push("work"));
  await other;
  return turns;
}

describe("packVectorsYielding", () => {
  const dimension = 1280;
  const rows = Array.from({ length: 2100 }, (_, i) => {
    const v = new Float32Array(dimension);
    for (let j = 0; j < dimension; j++) v[j] = Math.sin(i * 31 + j);
    return v;
  });
  it("packs exactly what packVectors packs, into a buffer of exactly that size", async () => {
    const packed = await packVectorsYielding(rows, dimension);
    expect(packed.length).toBe(rows.length * dimension);
    expect(packed.buffer.byteLength).toBe(rows.length * dimension * 4);
    // Byte for byte (a deep equality over 2.7 million elements would take vitest seconds).
    expect(bytes(packed).equals(bytes(packVectors(rows, dimension)))).toBe(true);
    expect(await packVectorsYielding([], dimension)).toEqual(new Float32Array(0));
  });

  it("lets the event loop run while it packs a large gallery", async () => {
    // It yields after rows 1,024 and 2,048 of the 2,100.
    expect(await turnOrder(() => packVectorsYielding(rows, dimension))).toEqual(["other", "work"]);
  });
});

describe("chunkRows (the vectors of a FAISS build, in transferable chunks)", () => {
  // A gallery of more than one chunk: 65,536 + 1,000 rows of 64 values (17 MB).
  const dimension = 64;
  const rows = VECTOR_CHUNK_ROWS + 1000;
  const vectors = new Float32Array(rows * dimension);
  for (let i = 0; i < vectors.length; i++) vectors[i] = Math.sin(i);
  it("cuts the rows into chunks of VECTOR_CHUNK_ROWS, each its own buffer, with the same values", async () => {
    const chunks = await chunkRows(vectors, dimension);
    expect(chunks.map((c) => c.length / dimension)).toEqual([VECTOR_CHUNK_ROWS, 1000]);
    for (const c of chunks) expect(c.buffer.byteLength).toBe(c.byteLength);
    const joined = Buffer.concat(chunks.map(bytes));
    expect(joined.equals(bytes(vectors))).toBe(true);
    // One chunk's worth that owns its buffer is handed over as it is.
    const small = new Float32Array(10 * dimension);
    expect((await chunkRows(small, dimension))[0]).toBe(small);
    await expect(chunkRows(new Float32Array(65), dimension)).rejects.toThrow(/not a multiple of 64/);
  });

  it("lets the event loop run while it copies", async () => {
    expect(await turnOrder(() => chunkRows(vectors, dimension))).toEqual(["other", "work"]);
  });
});
