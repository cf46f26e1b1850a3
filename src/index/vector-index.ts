import type { FaissParams, RecallCheckRequest, RecallCheckResult } from "./faiss/faiss.protocol.js";

export type { RecallCheckRequest, RecallCheckResult };
/** Search- and build-time parameters (efSearch, efConstruction, nprobe), where an index type has them. */
export type IndexParams = FaissParams;

/** Ranked results of one query: gallery labels (0-based insertion order) and cosine similarities. */
export interface SearchHits {
  labels: Int32Array;
  /** Cosine similarity of each label, best first (in [-1, 1]; approximate for compressed indexes). */
  scores: Float32Array;
}

/** Thrown while an index cannot answer (its worker died and is reloading, or it was closed). */
export class IndexUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IndexUnavailableError";
  }
}

/**
 * A gallery index over L2-normalised embeddings, owned by a backend. Every method is asynchronous:
 * the work runs off the main thread (or, for the reference backend, is cheap enough not to matter).
 */
export interface VectorIndex {
  /** Name of the backend that holds it. */
  readonly backend: string;
  readonly dimension: number;
  readonly count: number;
  /** The FAISS factory string it was built with (after resolving `auto`). */
  readonly factory: string;
  /** Parameters in force (efSearch, efConstruction, nprobe), where they apply. */
  readonly params: IndexParams;
  /** False while it cannot answer (e.g. its worker is restarting). */
  readonly ready: boolean;
  /**
   * Top-k by cosine similarity.
   * @param query - L2-normalised `Float32Array` of length {@link dimension}.
   * @param k - results wanted; clamped to {@link count}.
   * @throws IndexUnavailableError when the index cannot answer now.
   */
  search(query: Float32Array, k: number): Promise<SearchHits>;
  /**
   * Exact top-k among `ids` only (ascending labels), for selective filters.
   * @throws IndexUnavailableError when the index cannot answer now.
   */
  searchSubset(query: Float32Array, k: number, ids: Int32Array): Promise<SearchHits>;
  /** Applies search-time parameters (e.g. efSearch) without a rebuild. */
  setParams(params: IndexParams): Promise<void>;
  /**
   * Writes the index to `file`.
   * @throws Error from the backend when the file cannot be written.
   */
  save(file: string): Promise<void>;
  /** Where the index can be reloaded from if its backend loses it (set once the file is in place). */
  setSourceFile(file: string): void;
  /** Releases it; searches already queued are answered first. */
  close(): Promise<void>;
}

/** What a build is given. */
export interface BuildInput {
  dimension: number;
  /** Resolved factory string, e.g. `Flat` or `HNSW32,Flat` (never `auto`). */
  factory: string;
  /** `count` x `dimension` float32 values, row-major, rows L2-normalised. Ownership passes to the backend (it may transfer the buffer to a worker). */
  vectors: Float32Array;
  params: IndexParams;
  /** Measure recall@10 against exact search after the build; null to skip. */
  recall: RecallCheckRequest | null;
}

/** A built index with what the build measured. */
export interface BuiltIndex {
  index: VectorIndex;
  buildMs: number;
  recall: RecallCheckResult | null;
}

/** Where indexes are built, loaded and searched: the FAISS worker, or the exact reference. */
export interface VectorIndexBackend {
  readonly name: string;
  /**
   * Builds a new index without touching any index being served.
   * @throws Error when the factory string is invalid or the build fails.
   */
  build(input: BuildInput): Promise<BuiltIndex>;
  /**
   * Loads an index written by {@link VectorIndex.save}.
   * @throws Error when the file is missing or not an index of this backend.
   */
  load(file: string, options: { factory: string; params: IndexParams }): Promise<VectorIndex>;
}
