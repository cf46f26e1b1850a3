/**
 * The FAISS worker: the only place faiss-node is loaded. It holds at most one index and answers the
 * requests of `faiss.protocol.ts` one at a time; every native call (train, add, search, read, write)
 * runs here, never on the main thread.
 */
import { statSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import faiss from "faiss-node";
import { mergeTopK, RECALL_FETCH_K, recallAt10, recallSample } from "../recall.js";
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

/** Vectors per exact-search block of the recall check: bounds the temporary Flat index (~330 MB at 1280-d). */
const EXACT_BLOCK = 65_536;
/** Vectors per add call, so a failure is reported before gigabytes are copied. */
const ADD_CHUNK = 65_536;
/** Most vectors handed to train(): FAISS samples anyway (k-means uses at most 256 per centroid). */
const TRAIN_MAX_VECTORS = 65_536;

let index: faiss.Index | undefined;

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
  return { dimension: ix.getDimension(), count: ix.ntotal(), params: readParams(ix) };
}

/** Every `step`-th vector, at most {@link TRAIN_MAX_VECTORS}. */
function trainingSample(vectors: Float32Array, count: number, dimension: number): Float32Array {
  if (count <= TRAIN_MAX_VECTORS) return vectors;
  const step = count / TRAIN_MAX_VECTORS;
  const out = new Float32Array(TRAIN_MAX_VECTORS * dimension);
  for (let j = 0; j < TRAIN_MAX_VECTORS; j++) {
    const i = Math.floor(j * step);
    out.set(vectors.subarray(i * dimension, (i + 1) * dimension), j * dimension);
  }
  return out;
}

/** Exact top-k of `queries` over `vectors`, block by block through temporary Flat indexes. */
function exactSearch(
  vectors: Float32Array,
  dimension: number,
  metric: 0 | 1,
  queries: Float32Array,
  k: number,
): FaissHits {
  const nq = queries.length / dimension;
  const count = vectors.length / dimension;
  const higherIsBetter = metric === 0;
  const acc = {
    labels: new Int32Array(nq * k).fill(-1),
    distances: new Float32Array(nq * k).fill(higherIsBetter ? -Infinity : Infinity),
  };
  for (let start = 0; start < count; start += EXACT_BLOCK) {
    const end = Math.min(count, start + EXACT_BLOCK);
    const flat = faiss.Index.fromFactory(dimension, "Flat", metric);
    flat.addF32(vectors.subarray(start * dimension, end * dimension));
    const block = flat.searchF32(queries, k);
    mergeTopK(acc, block, k, start, higherIsBetter);
  }
  return { ...acc, k };
}

function recallCheck(
  ix: faiss.Index,
  vectors: Float32Array,
  dimension: number,
  metric: 0 | 1,
  req: RecallCheckRequest,
): RecallCheckResult | null {
  const count = vectors.length / dimension;
  if (count < 2) return null;
  const t0 = performance.now();
  const selfLabels = recallSample(count, req.queries, req.seed);
  const queries = new Float32Array(selfLabels.length * dimension);
  selfLabels.forEach((l, q) => {
    queries.set(vectors.subarray(l * dimension, (l + 1) * dimension), q * dimension);
  });
  const k = Math.min(RECALL_FETCH_K, count);
  const exact = exactSearch(vectors, dimension, metric, queries, k);
  const approx = ix.searchF32(queries, k);
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
      if (vectors.length % dimension !== 0)
        throw new Error(`vector data length ${vectors.length} is not a multiple of ${dimension}`);
      const count = vectors.length / dimension;
      faiss.Index.setOmpThreads(req.threads.build);
      const ix = faiss.Index.fromFactory(dimension, req.factory, req.metric);
      // efConstruction must be in place before the first add.
      applyParams(ix, { efConstruction: req.params.efConstruction });
      if (!ix.isTrained() && count > 0) ix.trainF32(trainingSample(vectors, count, dimension));
      for (let start = 0; start < count; start += ADD_CHUNK) {
        ix.addF32(vectors.subarray(start * dimension, Math.min(count, start + ADD_CHUNK) * dimension));
      }
      applyParams(ix, req.params);
      const buildMs = performance.now() - t0;
      const recall = req.recall ? recallCheck(ix, vectors, dimension, req.metric, req.recall) : null;
      faiss.Index.setOmpThreads(req.threads.search);
      index = ix;
      return { ...info(ix), buildMs, recall };
    }
    case "load": {
      const ix = faiss.Index.read(req.file);
      applyParams(ix, req.params);
      index = ix;
      return info(ix);
    }
    case "save": {
      current().write(req.file);
      return { bytes: statSync(req.file).size };
    }
    case "search": {
      const ix = current();
      const k = Math.max(1, Math.min(req.k, ix.ntotal()));
      return { ...ix.searchF32(req.queries, k), k };
    }
    case "searchSubset": {
      const ix = current();
      const k = Math.max(1, Math.min(req.k, req.ids.length));
      return { ...ix.searchSubsetF32(req.query, k, req.ids), k };
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
