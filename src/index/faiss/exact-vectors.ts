/**
 * Full-precision gallery vectors on disk, for exact re-ranking of a compressed index's candidates: the
 * index (e.g. HNSW over 8-bit scalar-quantised codes) stays in memory and finds candidates; their float32
 * vectors are read back from this file and re-scored by exact inner product. This is how DiskANN keeps
 * recall with compressed in-memory vectors (Subramanya et al., "DiskANN", NeurIPS 2019, section 3.4). The
 * file is `count` x `dimension` little-endian float32 rows in label order, read with `pread` (the kernel's
 * page cache, not the process heap, holds the hot rows).
 *
 * Used inside the FAISS worker only: every call is synchronous.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";

/** File name of the vectors beside `faiss_index.bin`. */
export const EXACT_VECTORS_FILE = "vectors.f32";

/**
 * Candidates fetched per result wanted: SQ8's ranking errors are swaps among near-ties, so a few times k
 * candidates hold nearly all of the exact top-k (measured in docs/benchmarks.md).
 */
export const RERANK_FACTOR = 4;
/** Fewest candidates re-ranked per query. */
export const RERANK_MIN_CANDIDATES = 40;

/** Candidates to fetch for `k` results from a gallery of `count`. */
export const rerankCandidates = (k: number, count: number) =>
  Math.min(count, Math.max(k * RERANK_FACTOR, RERANK_MIN_CANDIDATES, k));

/** Writes chunks of row-major vectors to `file` (created or truncated). */
export function writeExactVectors(file: string, chunks: readonly Float32Array[]): void {
  const fd = openSync(file, "w");
  try {
    for (const c of chunks) {
      const bytes = new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    }
  } finally {
    closeSync(fd);
  }
}

/** An open vectors file. */
export class ExactVectors {
  private readonly fd: number;
  private readonly row: Float32Array;
  private readonly rowBytes: Uint8Array;

  /**
   * @throws Error when the file does not hold exactly `count` rows of `dimension` float32 values.
   */
  constructor(
    readonly file: string,
    private readonly dimension: number,
    count: number,
  ) {
    this.fd = openSync(file, "r");
    const size = fstatSync(this.fd).size;
    if (size !== count * dimension * 4) {
      closeSync(this.fd);
      throw new Error(
        `${file} holds ${size} bytes; ${count} x ${dimension} float32 vectors need ${count * dimension * 4}`,
      );
    }
    this.row = new Float32Array(dimension);
    this.rowBytes = new Uint8Array(this.row.buffer);
  }

  /** Reads up to `buf.length` bytes of the file from `offset`; returns the count read. */
  readInto(buf: Uint8Array, offset: number): number {
    return readSync(this.fd, buf, 0, buf.length, offset);
  }

  /** Inner product of `query` with vector `label` (exact; cosine similarity for unit vectors). */
  innerProduct(query: Float32Array, queryOffset: number, label: number): number {
    const bytes = this.rowBytes.length;
    for (let off = 0; off < bytes; ) {
      const n = readSync(this.fd, this.rowBytes, off, bytes - off, label * bytes + off);
      if (n === 0) throw new Error(`${this.file} ends before vector ${label}`);
      off += n;
    }
    let dot = 0;
    for (let j = 0; j < this.dimension; j++)
      dot += (this.row[j] as number) * (query[queryOffset + j] as number);
    return dot;
  }

  /**
   * Re-scores `kk` candidates per query by exact inner product and keeps the best `k`.
   * @param candidates - row-major `nq` x `kk` labels (-1 = none).
   * @returns `nq` x `k` labels and inner products, best first; -1 pads.
   */
  rerank(
    queries: Float32Array,
    candidates: Int32Array,
    kk: number,
    k: number,
  ): { labels: Int32Array; distances: Float32Array } {
    const nq = candidates.length / kk;
    const labels = new Int32Array(nq * k).fill(-1);
    const distances = new Float32Array(nq * k).fill(Number.NEGATIVE_INFINITY);
    const scored: { label: number; ip: number }[] = [];
    for (let q = 0; q < nq; q++) {
      scored.length = 0;
      for (let j = 0; j < kk; j++) {
        const label = candidates[q * kk + j] as number;
        if (label >= 0) scored.push({ label, ip: this.innerProduct(queries, q * this.dimension, label) });
      }
      scored.sort((a, b) => b.ip - a.ip || a.label - b.label);
      for (let j = 0; j < Math.min(k, scored.length); j++) {
        labels[q * k + j] = (scored[j] as { label: number }).label;
        distances[q * k + j] = (scored[j] as { ip: number }).ip;
      }
    }
    return { labels, distances };
  }

  close(): void {
    closeSync(this.fd);
  }
}
