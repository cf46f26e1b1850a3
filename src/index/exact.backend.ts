import { readFile, writeFile } from "node:fs/promises";
import { mergeTopK, RECALL_FETCH_K, recallAt10, recallSample } from "./recall.js";
import type { BuildInput, BuiltIndex, SearchHits, VectorIndex, VectorIndexBackend } from "./vector-index.js";

const MAGIC = "DLEXACT1";

/** Exact top-k by inner product over `rows` (all rows when undefined). */
function bruteForce(
  vectors: Float32Array,
  dimension: number,
  query: Float32Array,
  k: number,
  rows?: Int32Array,
) {
  const n = rows ? rows.length : vectors.length / dimension;
  const kk = Math.min(k, n);
  const acc = { labels: new Int32Array(kk).fill(-1), distances: new Float32Array(kk).fill(-Infinity) };
  const one = { labels: new Int32Array(kk).fill(-1), distances: new Float32Array(kk).fill(-Infinity) };
  for (let r = 0; r < n; r++) {
    const label = rows ? (rows[r] as number) : r;
    let s = 0;
    const off = label * dimension;
    for (let d = 0; d < dimension; d++) s += (vectors[off + d] as number) * (query[d] as number);
    if (s <= (acc.distances[kk - 1] as number)) continue;
    one.labels.fill(-1);
    one.distances.fill(-Infinity);
    one.labels[0] = label;
    one.distances[0] = s;
    mergeTopK(acc, one, kk, 0, true);
  }
  const valid = acc.labels.findIndex((l) => l < 0);
  const end = valid < 0 ? kk : valid;
  return { labels: acc.labels.slice(0, end), scores: acc.distances.slice(0, end) };
}

function exactIndex(dimension: number, vectors: Float32Array): VectorIndex {
  let closed = false;
  const check = () => {
    if (closed) throw new Error("the index was closed");
  };
  return {
    backend: "exact",
    dimension,
    count: vectors.length / dimension,
    factory: "Flat",
    params: {},
    get ready() {
      return !closed;
    },
    async search(query, k): Promise<SearchHits> {
      check();
      return bruteForce(vectors, dimension, query, k);
    },
    async searchSubset(query, k, ids) {
      check();
      return bruteForce(vectors, dimension, query, k, ids);
    },
    async setParams() {},
    async save(file) {
      check();
      const header = Buffer.alloc(16);
      header.write(MAGIC, 0, "latin1");
      header.writeUInt32LE(dimension, 8);
      header.writeUInt32LE(vectors.length / dimension, 12);
      await writeFile(
        file,
        Buffer.concat([header, Buffer.from(vectors.buffer, vectors.byteOffset, vectors.byteLength)]),
      );
    },
    setSourceFile() {},
    async close() {
      closed = true;
    },
  };
}

/**
 * The reference backend: exact brute-force search in plain TypeScript on the calling thread. It defines
 * what every backend must answer (the contract tests compare against it); it is for tests and small
 * galleries, not for serving.
 */
export function createExactBackend(): VectorIndexBackend {
  return {
    name: "exact",
    async build(input: BuildInput): Promise<BuiltIndex> {
      const t0 = performance.now();
      if (input.vectors.length % input.dimension !== 0)
        throw new Error(`vector data length ${input.vectors.length} is not a multiple of ${input.dimension}`);
      const vectors = Float32Array.from(input.vectors);
      const index = exactIndex(input.dimension, vectors);
      const buildMs = performance.now() - t0;
      let recall: BuiltIndex["recall"] = null;
      if (input.recall && index.count >= 2) {
        const r0 = performance.now();
        const self = recallSample(index.count, input.recall.queries, input.recall.seed);
        const k = Math.min(RECALL_FETCH_K, index.count);
        const labels = new Int32Array(self.length * k).fill(-1);
        for (let q = 0; q < self.length; q++) {
          const l = self[q] as number;
          const hits = bruteForce(
            vectors,
            input.dimension,
            vectors.subarray(l * input.dimension, (l + 1) * input.dimension),
            k,
          );
          labels.set(hits.labels, q * k);
        }
        recall = {
          recallAt10: recallAt10(self, labels, k, labels, k),
          queries: self.length,
          ms: performance.now() - r0,
        };
      }
      return { index, buildMs, recall };
    },
    async load(file) {
      const buf = await readFile(file);
      if (buf.subarray(0, 8).toString("latin1") !== MAGIC)
        throw new Error(`${file} is not an exact-backend index`);
      const dimension = buf.readUInt32LE(8);
      const count = buf.readUInt32LE(12);
      const vectors = new Float32Array(count * dimension);
      Buffer.from(vectors.buffer).set(buf.subarray(16, 16 + count * dimension * 4));
      return exactIndex(dimension, vectors);
    },
  };
}
