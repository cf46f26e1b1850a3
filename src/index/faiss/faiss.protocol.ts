/**
 * Messages between the main thread and a FAISS worker (`faiss.worker.ts`). Every request carries an id
 * and gets exactly one reply with that id. Vectors travel as `Float32Array`s whose buffers are
 * transferred, not copied.
 */

/** Search-time and build-time parameters, applied with FAISS `ParameterSpace` where they apply. */
export interface FaissParams {
  /** HNSW candidate list size while inserting; set before the first add. */
  efConstruction?: number | undefined;
  /** HNSW candidate list size while searching. */
  efSearch?: number | undefined;
  /** IVF lists visited per query. */
  nprobe?: number | undefined;
}

/** How a build checks its own recall. */
export interface RecallCheckRequest {
  /** Gallery vectors used as queries (each left out of its own result lists). */
  queries: number;
  /** Seed of the query sample, so a rebuild of the same gallery measures the same queries. */
  seed: number;
}

/** Rows per vector chunk of a build request; also the worker's add and exact-search block. */
export const VECTOR_CHUNK_ROWS = 65_536;

/** A request to the worker. */
export type FaissRequest =
  | {
      op: "build";
      dimension: number;
      factory: string;
      /** 0 inner product, 1 squared L2 (FAISS `MetricType`). */
      metric: 0 | 1;
      /**
       * Row-major vectors in chunks of {@link VECTOR_CHUNK_ROWS} rows (the last may be shorter): one typed
       * array over 2^30 elements does not survive postMessage in Node 20, and 1M x 1280 is 1.28e9.
       */
      vectors: Float32Array[];
      params: FaissParams;
      recall: RecallCheckRequest | null;
      /** OpenMP threads for the build, then for this worker's searches. */
      threads: { build: number; search: number };
      /**
       * Where to write the full-precision vectors for exact re-ranking (compressed inner-product indexes),
       * or null for none. `save` moves it beside the index file (see `exact-vectors.ts`).
       */
      exactVectorsFile: string | null;
    }
  | { op: "load"; file: string; params: FaissParams }
  | { op: "save"; file: string }
  | { op: "search"; queries: Float32Array; k: number }
  | { op: "searchSubset"; query: Float32Array; k: number; ids: Int32Array }
  | { op: "setParams"; params: FaissParams };

/** What the worker knows about the index it holds. */
export interface FaissIndexInfo {
  dimension: number;
  count: number;
  /** Parameters in force after the request (undefined where they do not apply). */
  params: FaissParams;
  /** True when candidates are re-ranked by exact inner product from the vectors file. */
  exactRerank: boolean;
}

/** Outcome of a recall check (see `recall.ts`). */
export interface RecallCheckResult {
  /** Mean share of the exact top-10 (self left out) that the index returns. */
  recallAt10: number;
  queries: number;
  /** Time the check took (ms). */
  ms: number;
}

/** Labels and scores of `nq` queries, `k` per query, row-major; label -1 pads missing results. */
export interface FaissHits {
  labels: Int32Array;
  distances: Float32Array;
  k: number;
}

/** The reply payload of each request type. */
export interface FaissReplies {
  build: FaissIndexInfo & { buildMs: number; recall: RecallCheckResult | null };
  load: FaissIndexInfo;
  save: { bytes: number };
  search: FaissHits;
  searchSubset: FaissHits;
  setParams: FaissIndexInfo;
}

/** A request as sent: with its id. */
export type FaissEnvelope = FaissRequest & { id: number };

/** A reply as received. */
export type FaissReply =
  | { id: number; ok: true; value: FaissReplies[keyof FaissReplies] }
  | { id: number; ok: false; error: { message: string; name: string } };
