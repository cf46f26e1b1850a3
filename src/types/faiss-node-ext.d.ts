// Methods defect-lens adds to faiss-node 0.5.1 at install time (scripts/faiss-node-ext/methods.inc.cc).
// They take and return typed arrays, so no vector passes through a JS number[].
import "faiss-node";

declare module "faiss-node" {
  /** Result of the typed-array searches: row-major, `nq × k`; label -1 pads a short result list. */
  interface TypedSearchResult {
    /** Inner products (METRIC_INNER_PRODUCT) or squared L2 distances (METRIC_L2). */
    distances: Float32Array;
    labels: Int32Array;
  }

  interface Index {
    /** Adds `x.length / d` vectors; labels continue from `ntotal()`. */
    addF32(x: Float32Array): void;
    /** Trains on `x.length / d` vectors (IVF/PQ/SQ/PCA); a no-op for indexes that need none. */
    trainF32(x: Float32Array): void;
    /** Searches `x.length / d` query vectors for their `k` nearest neighbours. */
    searchF32(x: Float32Array, k: number): TypedSearchResult;
    /** efSearch / efConstruction (HNSW) or nprobe (IVF), looking through PCA/Refine/IDMap wrappers; -1 when the index has none. */
    getParameter(name: "efSearch" | "efConstruction" | "nprobe"): number;
    /** Sets a parameter; throws when the index has no such parameter or `value` is not a positive integer. */
    setParameter(name: "efSearch" | "efConstruction" | "nprobe", value: number): void;
    /** Reconstructed vectors of `ids` (IVF indexes build their direct map on first use). */
    reconstructBatch(ids: Int32Array): Float32Array;
    /** Exact top-k of the query vectors over the vectors with labels `ids` only (reconstructed, 16,384 at a time). */
    searchSubsetF32(x: Float32Array, k: number, ids: Int32Array): TypedSearchResult;
  }

  namespace Index {
    /** OpenMP team size for FAISS calls made from the calling thread. */
    function setOmpThreads(threads: number): void;
  }
}
