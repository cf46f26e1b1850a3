import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setImmediate } from "node:timers/promises";
import type { Worker } from "node:worker_threads";
import type { Logger } from "pino";
import { siblingModule, startModuleWorker } from "../../shared/module-worker.js";
import { WorkerRpc } from "../../shared/worker-rpc.js";
import {
  type BuildInput,
  type BuiltIndex,
  type IndexParams,
  IndexUnavailableError,
  type SearchHits,
  type VectorIndex,
  type VectorIndexBackend,
} from "../vector-index.js";
import {
  type FaissHits,
  type FaissIndexInfo,
  type FaissReplies,
  type FaissReply,
  type FaissRequest,
  VECTOR_CHUNK_ROWS,
} from "./faiss.protocol.js";

const WORKER_URL = siblingModule(import.meta.url, "faiss.worker");
/** Most queries sent to FAISS in one search call; more wait for the next batch. */
const MAX_BATCH = 64;
/** Delay before reloading after the worker died, doubled on each further death (ms). */
const RESTART_DELAY_MS = 250;
const MAX_RESTART_DELAY_MS = 30_000;

/**
 * FAISS metric for a factory string: squared L2 for PCA-reduced indexes (FAISS's PCA centres the data,
 * which shifts inner products but not distances), inner product otherwise. On unit vectors
 * ||x - y||^2 = 2 - 2 cos(x, y), so both rank alike.
 */
export const metricOf = (factory: string): 0 | 1 => (/^\s*PCA/i.test(factory) ? 1 : 0);

/**
 * True when candidates of `factory` are re-ranked by exact inner product from a vectors file on disk:
 * inner-product indexes whose stored codes are lossy (scalar or product quantisation), where code
 * rounding reorders near-ties (SQ8 alone reached recall@10 0.950 at 1M, docs/benchmarks.md).
 */
export const reranksExactly = (factory: string): boolean =>
  metricOf(factory) === 0 && /(^|,)\s*(SQ|PQ)\w*\s*$/i.test(factory);

/** Cosine similarities from the metric's distances. */
function toScores(distances: Float32Array, metric: 0 | 1): Float32Array {
  if (metric === 0) return distances;
  const out = new Float32Array(distances.length);
  for (let i = 0; i < distances.length; i++) out[i] = 1 - (distances[i] as number) / 2;
  return out;
}

/**
 * Values {@link chunkRows} copies between two turns of the event loop: 256 rows of 1280-d vectors, 1.3 MB,
 * about 5 ms of first-touch page faults on a 2-core VM (measured: 20-25 ms per 5 MB).
 */
const COPY_VALUES_PER_TURN = 256 * 1280;

/**
 * `vectors` as copies of {@link VECTOR_CHUNK_ROWS} rows each, every one with its own buffer so it can be
 * transferred (a build holds the gallery twice on the main thread for as long as the copy takes). The copy
 * hands the event loop back every {@link COPY_VALUES_PER_TURN} values: the first write to each page of a
 * fresh array page-faults (1-5 ms per MB on a small VM), so copying a 1M x 1280 gallery (5.1 GB) at once
 * held the main thread, and every search waiting on it, for 18 s (`bench/build-handoff.ts`).
 * @throws Error when `vectors.length` is not a multiple of `dimension`.
 */
export async function chunkRows(vectors: Float32Array, dimension: number): Promise<Float32Array[]> {
  if (vectors.length % dimension !== 0)
    throw new Error(`vector data length ${vectors.length} is not a multiple of ${dimension}`);
  const step = VECTOR_CHUNK_ROWS * dimension;
  if (vectors.length <= step && vectors.byteOffset === 0 && vectors.byteLength === vectors.buffer.byteLength)
    return [vectors];
  const chunks: Float32Array[] = [];
  for (let start = 0; start < vectors.length; start += step) {
    const chunk = new Float32Array(Math.min(step, vectors.length - start));
    for (let at = 0; at < chunk.length; at += COPY_VALUES_PER_TURN) {
      if (at > 0 || start > 0) await setImmediate();
      chunk.set(vectors.subarray(start + at, start + Math.min(at + COPY_VALUES_PER_TURN, chunk.length)), at);
    }
    chunks.push(chunk);
  }
  return chunks;
}

/** One worker thread and its request/reply bookkeeping. */
class WorkerChannel {
  private readonly worker: Worker;
  private readonly rpc: WorkerRpc<FaissReply, FaissReplies[keyof FaissReplies]>;
  private exited = false;

  constructor(onExit: (code: number, expected: boolean) => void) {
    this.worker = startModuleWorker(WORKER_URL, { stdout: false, stderr: false });
    this.rpc = new WorkerRpc<FaissReply, FaissReplies[keyof FaissReplies]>(this.worker, {
      unpack: (reply) =>
        reply.ok
          ? { value: reply.value }
          : { error: Object.assign(new Error(reply.error.message), { name: reply.error.name }) },
      failureError: (err) => new IndexUnavailableError(`FAISS worker failed: ${err.message}`),
      exitError: (code) => new IndexUnavailableError(`FAISS worker exited (code ${code})`),
    });
    let terminating = false;
    this.terminate = async () => {
      terminating = true;
      await this.worker.terminate();
    };
    this.terminateAsCrash = async () => {
      await this.worker.terminate();
    };
    this.worker.on("exit", (code) => {
      this.exited = true;
      onExit(code, terminating);
    });
  }

  readonly terminate: () => Promise<void>;
  /** Ends the worker the way a crash would: the owner sees an unexpected exit. */
  readonly terminateAsCrash: () => Promise<void>;

  get alive() {
    return !this.exited;
  }

  get busy() {
    return this.rpc.waiting > 0;
  }

  call<R extends FaissRequest>(req: R, transfer: ArrayBuffer[] = []): Promise<FaissReplies[R["op"]]> {
    if (this.exited) return Promise.reject(new IndexUnavailableError("FAISS worker is not running"));
    return this.rpc.call((id) => ({ ...req, id }), transfer) as Promise<FaissReplies[R["op"]]>;
  }

  /** Resolves when every request sent so far is answered. */
  async drain(): Promise<void> {
    while (this.rpc.waiting > 0) await new Promise((r) => setTimeout(r, 5));
  }
}

interface QueuedSearch {
  query: Float32Array;
  k: number;
  resolve: (hits: SearchHits) => void;
  reject: (e: Error) => void;
}

/**
 * An index held by its own FAISS worker. Searches that arrive while the worker is busy are sent together
 * as one FAISS call with nq > 1 (FAISS's batched search: "Faster search", FAISS wiki). If the worker dies,
 * searches fail with {@link IndexUnavailableError} while a new worker reloads the index from its file.
 */
class FaissWorkerIndex implements VectorIndex {
  readonly backend = "faiss-worker";
  private queue: QueuedSearch[] = [];
  private searching = false;
  private closed = false;
  private sourceFile: string | undefined;
  private restartDelay = RESTART_DELAY_MS;
  private state: "ready" | "recovering" | "failed" = "ready";
  private channel: WorkerChannel;
  readonly metric: 0 | 1;

  /** The build's vectors file, deleted at close unless a save moved it beside the index file. */
  scratchFile: string | undefined;

  constructor(
    channelFactory: (onExit: (code: number, expected: boolean) => void) => WorkerChannel,
    private info: FaissIndexInfo,
    readonly factory: string,
    private readonly logger: Logger | undefined,
  ) {
    this.metric = metricOf(factory);
    this.channelFactory = channelFactory;
    this.channel = channelFactory(this.onExit);
  }

  private readonly channelFactory: (onExit: (code: number, expected: boolean) => void) => WorkerChannel;

  get dimension() {
    return this.info.dimension;
  }
  get count() {
    return this.info.count;
  }
  get params() {
    return this.info.params;
  }
  get ready() {
    return this.state === "ready" && !this.closed;
  }

  private readonly onExit = (code: number, expected: boolean) => {
    this.failQueue(new IndexUnavailableError(`the FAISS worker exited (code ${code})`));
    if (expected || this.closed) return;
    this.state = "recovering";
    this.logger?.error({ code, factory: this.factory }, "FAISS worker died; reloading the index");
    const delay = this.restartDelay;
    this.restartDelay = Math.min(MAX_RESTART_DELAY_MS, this.restartDelay * 2);
    setTimeout(() => void this.recover(), delay).unref();
  };

  private async recover() {
    if (this.closed) return;
    if (!this.sourceFile) {
      this.state = "failed";
      this.logger?.error("the index was never persisted; it cannot be reloaded until a rebuild");
      return;
    }
    try {
      const channel = this.channelFactory(this.onExit);
      const info = await channel.call({ op: "load", file: this.sourceFile, params: this.info.params });
      if (this.closed) {
        await channel.terminate();
        return;
      }
      this.channel = channel;
      this.info = info;
      this.state = "ready";
      this.logger?.info(
        { file: this.sourceFile, count: info.count },
        "FAISS worker restarted; index reloaded",
      );
      setTimeout(() => {
        if (this.state === "ready") this.restartDelay = RESTART_DELAY_MS;
      }, MAX_RESTART_DELAY_MS).unref();
    } catch (err) {
      this.logger?.error({ err }, "reloading the index after a FAISS worker death failed; retrying");
      this.onExit(-1, false);
    }
  }

  private unavailable() {
    return new IndexUnavailableError(
      this.closed
        ? "the index was replaced or closed"
        : `the index is ${this.state} after a FAISS worker failure`,
    );
  }

  private failQueue(err: Error) {
    const q = this.queue;
    this.queue = [];
    for (const s of q) s.reject(err);
  }

  search(query: Float32Array, k: number): Promise<SearchHits> {
    if (!this.ready) return Promise.reject(this.unavailable());
    if (query.length !== this.dimension)
      return Promise.reject(
        new Error(`query has ${query.length} values; the index holds ${this.dimension}-d vectors`),
      );
    return new Promise((resolve, reject) => {
      this.queue.push({ query, k, resolve, reject });
      this.pump();
    });
  }

  /** Sends everything queued as one batch unless a batch is already in the worker. */
  private pump() {
    if (this.searching || this.queue.length === 0) return;
    const batch = this.queue.splice(0, MAX_BATCH);
    const d = this.dimension;
    const k = Math.min(this.count, Math.max(...batch.map((s) => s.k)));
    const queries = new Float32Array(batch.length * d);
    batch.forEach((s, i) => {
      queries.set(s.query, i * d);
    });
    this.searching = true;
    this.channel
      .call({ op: "search", queries, k }, [queries.buffer])
      .then((hits) => {
        const scores = toScores(hits.distances, this.metric);
        batch.forEach((s, i) => {
          s.resolve(rowOf(hits, scores, i, s.k));
        });
      })
      .catch((err: Error) => {
        for (const s of batch) s.reject(err instanceof IndexUnavailableError ? this.unavailable() : err);
      })
      .finally(() => {
        this.searching = false;
        this.pump();
      });
  }

  async searchSubset(query: Float32Array, k: number, ids: Int32Array): Promise<SearchHits> {
    if (!this.ready) throw this.unavailable();
    if (ids.length === 0) return { labels: new Int32Array(0), scores: new Float32Array(0) };
    const q = Float32Array.from(query);
    const copy = Int32Array.from(ids);
    try {
      const hits = await this.channel.call({ op: "searchSubset", query: q, k, ids: copy }, [
        q.buffer,
        copy.buffer,
      ]);
      return rowOf(hits, toScores(hits.distances, this.metric), 0, k);
    } catch (err) {
      throw err instanceof IndexUnavailableError ? this.unavailable() : err;
    }
  }

  async setParams(params: IndexParams) {
    this.info = await this.channel.call({ op: "setParams", params });
  }

  async save(file: string) {
    await this.channel.call({ op: "save", file });
    this.scratchFile = undefined;
  }

  setSourceFile(file: string) {
    this.sourceFile = file;
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    // Searches taken before the swap are answered by this index, then its worker goes.
    while (this.searching || this.queue.length > 0) await new Promise((r) => setTimeout(r, 5));
    await this.channel.drain();
    await this.channel.terminate();
    if (this.scratchFile) rmSync(this.scratchFile, { force: true });
  }

  /** For tests: ends the worker as a crash would, without the index knowing. */
  killWorkerForTest(): Promise<void> {
    return this.channel.terminateAsCrash();
  }
}

/** Row `i` of a batch reply, padding (-1) dropped, at most `k` results. */
function rowOf(hits: FaissHits, scores: Float32Array, i: number, k: number): SearchHits {
  const start = i * hits.k;
  const labels: number[] = [];
  const out: number[] = [];
  for (let j = 0; j < Math.min(k, hits.k); j++) {
    const l = hits.labels[start + j] as number;
    if (l < 0) continue;
    labels.push(l);
    out.push(scores[start + j] as number);
  }
  return { labels: Int32Array.from(labels), scores: Float32Array.from(out) };
}

/**
 * The FAISS backend: every index lives in its own worker thread (faiss-node is loaded only there), so a
 * build runs in a fresh worker while the old index keeps answering in its own, and the swap is one
 * assignment on the main thread.
 */
export function createFaissWorkerBackend({
  logger,
  threads = { build: 1, search: 1 },
  scratchDir = os.tmpdir(),
}: {
  logger?: Logger;
  /**
   * Folder for the full-precision vectors of built, not yet saved, compressed indexes (as large as the
   * gallery's float32 vectors); on the index cache's file system a save moves them instead of copying.
   */
  scratchDir?: string;
  /**
   * OpenMP threads of a build (HNSW insertion and SQ/PCA training run in parallel) and of the searches
   * that follow in the same worker. Loaded indexes search with OMP_NUM_THREADS.
   */
  threads?: { build: number; search: number };
} = {}): VectorIndexBackend {
  const newChannel = (onExit: (code: number, expected: boolean) => void) => new WorkerChannel(onExit);

  /** Runs `first` in a new worker and wraps the index it leaves there. */
  async function inNewWorker<T extends FaissIndexInfo>(
    factory: string,
    first: (channel: WorkerChannel) => Promise<T>,
  ): Promise<{ index: FaissWorkerIndex; reply: T }> {
    let exitHandler: (code: number, expected: boolean) => void = () => {};
    const channel = new WorkerChannel((code, expected) => exitHandler(code, expected));
    try {
      const reply = await first(channel);
      let index: FaissWorkerIndex | undefined;
      const wrapped = new FaissWorkerIndex(
        (onExit) => {
          // The first channel is the one that built the index; later ones are restarts.
          if (!index) {
            exitHandler = onExit;
            return channel;
          }
          return newChannel(onExit);
        },
        reply,
        factory,
        logger,
      );
      index = wrapped;
      return { index: wrapped, reply };
    } catch (err) {
      await channel.terminate();
      throw err;
    }
  }

  return {
    name: "faiss-worker",
    async build(input: BuildInput): Promise<BuiltIndex> {
      const chunks = await chunkRows(input.vectors, input.dimension);
      const exactVectorsFile = reranksExactly(input.factory)
        ? path.join(scratchDir, `defect-lens-vectors-${randomUUID()}.f32`)
        : null;
      const built = inNewWorker(input.factory, (channel) =>
        channel.call(
          {
            op: "build",
            dimension: input.dimension,
            factory: input.factory,
            metric: metricOf(input.factory),
            vectors: chunks,
            params: input.params,
            recall: input.recall,
            threads,
            exactVectorsFile,
          },
          chunks.map((c) => c.buffer as ArrayBuffer),
        ),
      );
      try {
        const { index, reply } = await built;
        if (exactVectorsFile) index.scratchFile = exactVectorsFile;
        return { index, buildMs: reply.buildMs, recall: reply.recall };
      } catch (err) {
        if (exactVectorsFile) rmSync(exactVectorsFile, { force: true });
        throw err;
      }
    },
    async load(file, { factory, params }) {
      const { index } = await inNewWorker(factory, (channel) => channel.call({ op: "load", file, params }));
      index.setSourceFile(file);
      return index;
    },
  };
}

/** For tests: kills the worker behind a FAISS-backed index as a crash would. */
export function killFaissWorkerForTest(index: VectorIndex): Promise<void> {
  if (!(index instanceof FaissWorkerIndex)) throw new Error("not a FAISS worker index");
  return index.killWorkerForTest();
}
