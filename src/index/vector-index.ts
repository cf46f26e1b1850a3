import { open, readFile } from "node:fs/promises";
import faiss from "faiss-node";
import { type HnswParams, isHnswHeader, withHnswParams } from "./hnsw.params.js";

/** Vectors added to faiss-node per call; it takes plain arrays, so chunks bound the copy. */
const ADD_CHUNK_VECTORS = 4096;

/** A FAISS inner-product index over L2-normalised vectors: scores are cosine similarities. */
export interface VectorIndex {
  readonly dimension: number;
  readonly count: number;
  /**
   * Top-k by inner product.
   * @param query - L2-normalised `Float32Array` of length {@link dimension}.
   * @param k - clamped to {@link count}.
   * @returns labels (0-based insertion order) and scores, best first.
   */
  search(query: Float32Array, k: number): { labels: number[]; scores: number[] };
  /** The index serialised by FAISS `write_index`. */
  toBuffer(): Buffer;
  /** Writes the index with FAISS `write_index` straight to a file (no 2 GiB Buffer limit). */
  writeFile(file: string): void;
}

function wrap(index: faiss.Index): VectorIndex {
  const dimension = index.getDimension();
  const count = index.ntotal();
  return {
    dimension,
    count,
    search(query, k) {
      const kk = Math.min(k, count);
      if (kk <= 0) return { labels: [], scores: [] };
      const r = index.search(Array.from(query), kk);
      // FAISS pads with label -1 when fewer than k results exist (e.g. HNSW with a small efSearch).
      const labels: number[] = [];
      const scores: number[] = [];
      r.labels.forEach((label, i) => {
        if (label >= 0) {
          labels.push(label);
          scores.push(r.distances[i] as number);
        }
      });
      return { labels, scores };
    },
    toBuffer: () => index.toBuffer(),
    writeFile: (file) => index.write(file),
  };
}

/** Most numbers handed to train(): a V8 array holds about 1.3e8, and FAISS trains on a sample anyway. */
const TRAIN_MAX_NUMBERS = 2 ** 25;

/** Every `step`-th vector, so training (IVF, SQ) stays within {@link TRAIN_MAX_NUMBERS}. */
function trainingSample(vectors: Float32Array, count: number, dimension: number): Float32Array {
  const step = Math.max(1, Math.ceil((count * dimension) / TRAIN_MAX_NUMBERS));
  if (step === 1) return vectors;
  const sample = new Float32Array(Math.ceil(count / step) * dimension);
  for (let i = 0, j = 0; i < count; i += step, j++) {
    sample.set(vectors.subarray(i * dimension, (i + 1) * dimension), j * dimension);
  }
  return sample;
}

/**
 * Builds an index with the FAISS index factory (inner-product metric).
 * @param factory - FAISS factory string, e.g. `Flat` (exact) or `HNSW32,Flat`
 *   (https://github.com/facebookresearch/faiss/wiki/The-index-factory).
 * @param vectors - `count` x `dimension` float32 values, row-major, each row L2-normalised.
 * @throws Error from FAISS when the factory string is invalid.
 */
export function buildVectorIndex({
  dimension,
  factory,
  vectors,
  hnsw = {},
}: {
  dimension: number;
  factory: string;
  vectors: Float32Array;
  /** Applied when the factory builds an HNSW index; ignored otherwise. */
  hnsw?: HnswParams;
}): VectorIndex {
  if (vectors.length % dimension !== 0)
    throw new Error(`vector data length ${vectors.length} is not a multiple of ${dimension}`);
  const empty = faiss.Index.fromFactory(dimension, factory, faiss.MetricType.METRIC_INNER_PRODUCT);
  // efConstruction must be in place before the first add; round-tripping the empty index sets it.
  const index = faiss.Index.fromBuffer(withHnswParams(empty.toBuffer(), hnsw));
  const count = vectors.length / dimension;
  if (!index.isTrained() && count > 0) index.train(Array.from(trainingSample(vectors, count, dimension)));
  for (let start = 0; start < count; start += ADD_CHUNK_VECTORS) {
    const end = Math.min(count, start + ADD_CHUNK_VECTORS);
    index.add(Array.from(vectors.subarray(start * dimension, end * dimension)));
  }
  return wrap(index);
}

/**
 * Reads an index file written by {@link VectorIndex.writeFile} or FAISS `write_index`, applying
 * `hnsw.efSearch` to HNSW indexes.
 * @throws Error from FAISS when the file is not a FAISS index.
 */
export async function vectorIndexFromFile(file: string, hnsw: HnswParams = {}): Promise<VectorIndex> {
  // HNSW parameters are set by rewriting the serialised bytes, so HNSW indexes are read into memory;
  // every other type is read by FAISS itself.
  const handle = await open(file, "r");
  const head = Buffer.alloc(4);
  try {
    await handle.read(head, 0, 4, 0);
  } finally {
    await handle.close();
  }
  if (isHnswHeader(head) && hnsw.efSearch !== undefined)
    return vectorIndexFromBuffer(await readFile(file), hnsw);
  return wrap(faiss.Index.read(file));
}

/**
 * Reads an index written by {@link VectorIndex.toBuffer}, applying `hnsw.efSearch` to HNSW indexes.
 * @throws Error from FAISS when the bytes are not a FAISS index.
 */
export function vectorIndexFromBuffer(buffer: Buffer, hnsw: HnswParams = {}): VectorIndex {
  return wrap(faiss.Index.fromBuffer(withHnswParams(buffer, hnsw)));
}
