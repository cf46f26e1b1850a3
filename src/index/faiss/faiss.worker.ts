/**
 * The FAISS worker: the only place faiss-node is loaded. It holds at most one index and answers the
 * requests of `faiss.protocol.ts` one at a time; every native call (train, add, search, read, write)
 * runs here, never on the main thread.
 */
import { closeSync, existsSync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";
import { parentPort } from "node:worker_threads";
import faiss from "faiss-node";
import { mergeTopK, RECALL_FETCH_K, recallAt10, recallSample } from "../recall.js";
import { EXACT_VECTORS_FILE, ExactVectors, rerankCandidates, writeExactVectors } from "./exact-vectors.js";
import type {
  FaissEnvelope,
  FaissHits,
  FaissIndexInfo,
  FaissParams,
  FaissReplies,
  FaissReply,
  RecallCheckRequest,
  RecallCheckResult,
} from "./faiss.protocol.js";
import { VECTOR_CHUNK_ROWS } from "./faiss.protocol.js";

/** Most vectors handed to train(): FAISS samples anyway (k-means uses at most 256 per centroid). */
const TRAIN_MAX_VECTORS = 65_536;

let index: faiss.Index | undefined;
/** Full-precision vectors of `index` for exact re-ranking, when it has them. */
let exact: ExactVectors | undefined;
/** True while `exact` is the build's scratch file, not yet moved beside a saved index. */
let exactIsScratch = false;

function current(): faiss.Index {
  if (!index) throw new Error("no index is loaded in this FAISS worker");
  return index;
}

function readParams(ix: faiss.Index): FaissParams {
  const get = (name: "efSearch" | "efConstruction" | "nprobe") => {
    const v = ix.getParameter(name);
    return v >= 0 ? v : undefined;
  };
  return { efConstruction: get("efConstruction"), efSearch: get("efSearch"), nprobe: get("nprobe") };
}

function applyParams(ix: faiss.Index, params: FaissParams): void {
  for (const name of ["efConstruction", "efSearch", "nprobe"] as const) {
    const value = params[name];
    if (value === undefined) continue;
    // A parameter that does not apply to this index type (efSearch on Flat) is not an error.
    if (ix.getParameter(name) < 0) continue;
    ix.setParameter(name, value);
  }
}

function info(ix: faiss.Index): FaissIndexInfo {
  return { dimension: ix.getDimension(), count: ix.ntotal(), params: readParams(ix), exactRerank: !!exact };
}

/** Top-k of `queries`: FAISS alone, or FAISS candidates re-ranked by exact inner product. */
function searchHits(ix: faiss.Index, queries: Float32Array, k: number): faiss.TypedSearchResult {
  if (!exact) return ix.searchF32(queries, k);
  const kk = rerankCandidates(k, ix.ntotal());
  return exact.rerank(queries, ix.searchF32(queries, kk).labels, kk, k);
}

/** Copies the open vectors file to `target` through its descriptor (its path may have moved since). */
function copyExactVectors(source: ExactVectors, target: string, bytes: number): void {
  const fd = openSync(target, "w");
  const buf = new Uint8Array(1 << 20);
  try {
    for (let off = 0; off < bytes; ) {
      const n = source.readInto(buf, off);
      for (let w = 0; w < n; ) w += writeSync(fd, buf, w, n - w);
      off += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** Row `i` of chunked vectors (see `VECTOR_CHUNK_ROWS`). */
function rowOf(chunks: readonly Float32Array[], dimension: number, i: number): Float32Array {
  const chunk = chunks[Math.floor(i / VECTOR_CHUNK_ROWS)];
  if (!chunk) throw new Error(`row ${i} is outside the vectors`);
  const r = i % VECTOR_CHUNK_ROWS;
  return chunk.subarray(r * dimension, (r + 1) * dimension);
}

/** Every `step`-th vector, at most {@link TRAIN_MAX_VECTORS}. */
function trainingSample(chunks: readonly Float32Array[], count: number, dimension: number): Float32Array {
  const n = Math.min(count, TRAIN_MAX_VECTORS);
  const step = count / n;
  const out = new Float32Array(n * dimension);
  for (let j = 0; j < n; j++) out.set(rowOf(chunks, dimension, Math.floor(j * step)), j * dimension);
  return out;
}

/** Exact top-k of `queries` over the vectors, chunk by chunk through temporary Flat indexes. */
function exactSearch(
  chunks: readonly Float32Array[],
  dimension: number,
  metric: 0 | 1,
  queries: Float32Array,
  k: number,
): FaissHits {
  const nq = queries.length / dimension;
  const higherIsBetter = metric === 0;
  const acc = {
    labels: new Int32Array(nq * k).fill(-1),
    distances: new Float32Array(nq * k).fill(higherIsBetter ? -Infinity : Infinity),
  };
  chunks.forEach((chunk, c) => {
    const flat = faiss.Index.fromFactory(dimension, "Flat", metric);
    flat.addF32(chunk);
    // FAISS pads a chunk with fewer than k rows with label -1, which the merge skips.
    mergeTopK(acc, flat.searchF32(queries, k), k, c * VECTOR_CHUNK_ROWS, higherIsBetter);
  });
  return { ...acc, k };
}

function recallCheck(
  ix: faiss.Index,
  chunks: readonly Float32Array[],
  count: number,
  dimension: number,
  metric: 0 | 1,
  req: RecallCheckRequest,
): RecallCheckResult | null {
  if (count < 2) return null;
  const t0 = performance.now();
  const selfLabels = recallSample(count, req.queries, req.seed);
  const queries = new Float32Array(selfLabels.length * dimension);
  selfLabels.forEach((l, q) => {
    queries.set(rowOf(chunks, dimension, l), q * dimension);
  });
  const k = Math.min(RECALL_FETCH_K, count);
  const exact = exactSearch(chunks, dimension, metric, queries, k);
  const approx = searchHits(ix, queries, k);
  return {
    recallAt10: recallAt10(selfLabels, exact.labels, k, approx.labels, k),
    queries: selfLabels.length,
    ms: performance.now() - t0,
  };
}

function handle(req: FaissEnvelope): FaissReplies[keyof FaissReplies] {
  switch (req.op) {
    case "build": {
      const t0 = performance.now();
      const { dimension, vectors } = req;
      let count = 0;
      vectors.forEach((chunk, c) => {
        const rows = chunk.length / dimension;
        if (!Number.isInteger(rows) || (c < vectors.length - 1 && rows !== VECTOR_CHUNK_ROWS))
          throw new Error(`vector chunk ${c} holds ${chunk.length} values, not whole ${dimension}-d rows`);
        count += rows;
      });
      faiss.Index.setOmpThreads(req.threads.build);
      const ix = faiss.Index.fromFactory(dimension, req.factory, req.metric);
      // efConstruction must be in place before the first add.
      applyParams(ix, { efConstruction: req.params.efConstruction });
      if (!ix.isTrained() && count > 0) ix.trainF32(trainingSample(vectors, count, dimension));
      for (const chunk of vectors) ix.addF32(chunk);
      applyParams(ix, req.params);
      if (req.exactVectorsFile) {
        writeExactVectors(req.exactVectorsFile, vectors);
        exact = new ExactVectors(req.exactVectorsFile, dimension, count);
        exactIsScratch = true;
      }
      const buildMs = performance.now() - t0;
      const recall = req.recall ? recallCheck(ix, vectors, count, dimension, req.metric, req.recall) : null;
      faiss.Index.setOmpThreads(req.threads.search);
      index = ix;
      return { ...info(ix), buildMs, recall };
    }
    case "load": {
      const ix = faiss.Index.read(req.file);
      applyParams(ix, req.params);
      const vectorsFile = path.join(path.dirname(req.file), EXACT_VECTORS_FILE);
      if (existsSync(vectorsFile)) exact = new ExactVectors(vectorsFile, ix.getDimension(), ix.ntotal());
      index = ix;
      return info(ix);
    }
    case "save": {
      const ix = current();
      ix.write(req.file);
      let bytes = statSync(req.file).size;
      if (exact) {
        const target = path.join(path.dirname(req.file), EXACT_VECTORS_FILE);
        const size = ix.ntotal() * ix.getDimension() * 4;
        if (exactIsScratch) {
          try {
            renameSync(exact.file, target);
          } catch {
            // Another file system than the scratch folder's: copy, then drop the scratch file.
            copyExactVectors(exact, target, size);
            unlinkSync(exact.file);
          }
        } else {
          copyExactVectors(exact, target, size);
        }
        exact.close();
        exact = new ExactVectors(target, ix.getDimension(), ix.ntotal());
        exactIsScratch = false;
        bytes += size;
      }
      return { bytes };
    }
    case "search": {
      const ix = current();
      const k = Math.max(1, Math.min(req.k, ix.ntotal()));
      return { ...searchHits(ix, req.queries, k), k };
    }
    case "searchSubset": {
      const ix = current();
      const k = Math.max(1, Math.min(req.k, req.ids.length));
      if (!exact) return { ...ix.searchSubsetF32(req.query, k, req.ids), k };
      const kk = rerankCandidates(k, req.ids.length);
      return { ...exact.rerank(req.query, ix.searchSubsetF32(req.query, kk, req.ids).labels, kk, k), k };
    }
    case "setParams": {
      const ix = current();
      applyParams(ix, req.params);
      return info(ix);
    }
  }
}

const port = parentPort;
if (!port) throw new Error("faiss.worker.ts must run in a worker thread");
port.on("message", (req: FaissEnvelope) => {
  let reply: FaissReply;
  const transfer: ArrayBuffer[] = [];
  try {
    const value = handle(req);
    if ("labels" in value)
      transfer.push(value.labels.buffer as ArrayBuffer, value.distances.buffer as ArrayBuffer);
    reply = { id: req.id, ok: true, value };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    reply = { id: req.id, ok: false, error: { message: err.message, name: err.name } };
  }
  try {
    port.postMessage(reply, transfer);
  } catch {
    // A buffer that cannot be transferred is copied instead.
    port.postMessage(reply);
  }
});
