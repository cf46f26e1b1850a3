import { createHash } from "node:crypto";
import type { Worker } from "node:worker_threads";
import type { ModelConfig } from "../config/config.js";
import { errors, isDomainError } from "../shared/errors.js";
import { siblingModule, startModuleWorker } from "../shared/module-worker.js";
import { WorkerRpc } from "../shared/worker-rpc.js";
import type {
  InferenceReply,
  InferenceRequest,
  InferenceWorkerData,
  InferenceWorkerStatus,
} from "./inference.worker.js";
import type { ModelInput } from "./model-input.js";

const WORKER_URL = siblingModule(import.meta.url, "inference.worker");

/** An ONNX image encoder loaded once; turns preprocessed tensors into L2-normalised embeddings. */
export interface EmbeddingModel {
  /**
   * `<preset>@<first 12 hex of the model file's sha256>.<first 6 hex of the preprocessing's hash>`; keys
   * stored embeddings, so another model file or another preprocessing (multi-view settings included)
   * never reuses old vectors.
   */
  readonly modelId: string;
  /** Embedding length. */
  readonly dimension: number;
  /**
   * Runs the model on a batch.
   * @param inputs - each a {@link ModelInput} (3 x inputSize x inputSize bytes, interleaved RGB) from
   *   `preprocessImage`.
   * @returns one L2-normalised `Float32Array` of length {@link dimension} per input, in order.
   * @throws DomainError FEATURE_EXTRACTION_FAILED when inference fails or yields a non-finite or zero vector,
   *   or when the inference worker stopped while the batch was in it (retryable: the next call starts a
   *   new worker).
   */
  embed(inputs: readonly ModelInput[]): Promise<Float32Array[]>;
  /**
   * `<modelId>#texture@<tensor>`: keys stored texture descriptors; null when the model has no texture
   * tensor configured (MODEL_TEXTURE_TENSOR).
   */
  readonly textureModelId: string | null;
  /** Texture descriptor length (2 x the tensor's channels); 0 without a texture tensor. */
  readonly textureDimension: number;
  /**
   * {@link embed}, plus each input's texture descriptor (`texture.ts`: unit-length `Float32Array` of
   * {@link textureDimension}) from the same inference run; `textures` is null without a texture tensor
   * or when `options.texture` is false (the map is then not fetched from the session: less copying).
   * @throws as {@link embed}.
   */
  embedDetailed(
    inputs: readonly ModelInput[],
    options?: { texture?: boolean },
  ): Promise<{ embeddings: Float32Array[]; textures: Float32Array[] | null }>;
  /** Ends the inference worker; calls still waiting for it fail with FEATURE_EXTRACTION_FAILED. */
  close(): Promise<void>;
  /**
   * Inference runs so far and the inputs they carried (calls merged by dynamic batching count once):
   * `inputs / runs` is the mean batch size.
   */
  readonly runStats: { readonly runs: number; readonly inputs: number };
}

/**
 * L2-normalises `v` in place.
 * @returns false when the norm is zero or not finite (the vector is unusable for cosine similarity).
 */
export function l2NormalizeInPlace(v: Float32Array): boolean {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += (v[i] as number) * (v[i] as number);
  const norm = Math.sqrt(sum);
  if (!Number.isFinite(norm) || norm === 0) return false;
  for (let i = 0; i < v.length; i++) v[i] = (v[i] as number) / norm;
  return true;
}

const stoppedError = (why: string) =>
  errors.featureExtractionFailed(`The inference worker stopped (${why}); the request can be retried.`);

/** What one run hands back: the embedding tensor, the batch buffer to reuse, texture descriptors if any. */
type RunOutput = { data: Float32Array; batch: Uint8Array; texture: Float32Array | undefined };

/** One inference worker (one onnxruntime session) and its request bookkeeping. */
class InferenceChannel {
  private readonly worker: Worker;
  private readonly rpc: WorkerRpc<InferenceReply, RunOutput>;
  /** Why the worker stopped or is being stopped; replies that arrive after that are dropped. */
  private stopped: string | undefined;
  private loaded = false;
  /** Resolves once the session exists, with the texture descriptor length; rejects with the load error. */
  readonly ready: Promise<number>;
  private readonly exited: Promise<void>;

  constructor(workerData: InferenceWorkerData) {
    this.worker = startModuleWorker(WORKER_URL, { workerData, stdout: false, stderr: false });
    let failure: Error | undefined;
    this.worker.on("error", (err) => {
      failure = err;
    });
    this.exited = new Promise((resolve) => this.worker.once("exit", () => resolve()));
    // Runs waiting when the worker stops fail at once: at stop() (its own error) or at the exit.
    this.rpc = new WorkerRpc<InferenceReply, RunOutput>(this.worker, {
      isReply: (msg) =>
        this.stopped === undefined && (msg as InferenceWorkerStatus | InferenceReply).type === "reply",
      unpack: (reply) =>
        reply.ok
          ? { value: { data: reply.data, batch: reply.batch, texture: reply.texture } }
          : { error: new Error(reply.message) },
      afterReply: () => this.unrefWhenIdle(),
      exitError: (code) => {
        this.stopped ??= failure ? `it failed: ${failure.message}` : `exit code ${code}`;
        return stoppedError(this.stopped);
      },
    });
    this.ready = new Promise((resolve, reject) => {
      this.worker.on("message", (msg: InferenceWorkerStatus | InferenceReply) => {
        if (this.stopped !== undefined) return;
        if (msg.type === "ready") {
          this.loaded = true;
          resolve(msg.textureDimension);
          this.unrefWhenIdle();
        } else if (msg.type === "init-error") {
          reject(new Error(msg.message));
          void this.stop("the model could not be loaded");
        }
      });
      this.worker.on("exit", () => {
        reject(new Error(`The inference worker stopped (${this.stopped}) before the model was loaded.`));
      });
    });
    // Each caller awaits `ready` itself; this only keeps an unobserved failure from being "unhandled".
    this.ready.catch(() => {});
  }

  /** False once the worker stopped or was asked to; such a channel is never used again. */
  get alive(): boolean {
    return this.stopped === undefined;
  }

  /** True from the moment the session is loaded until the worker stops. */
  get serving(): boolean {
    return this.loaded && this.alive;
  }

  /**
   * Runs one batch in the worker. `batch`'s buffer is transferred, so it is unusable afterwards.
   * @returns the raw output tensor data, and the batch's buffer back when the run succeeded.
   * @throws DomainError FEATURE_EXTRACTION_FAILED when the worker stops first; Error when the run fails.
   */
  run(batch: Uint8Array, n: number, texture: boolean): Promise<RunOutput> {
    if (this.stopped !== undefined) return Promise.reject(stoppedError(this.stopped));
    this.worker.ref();
    return this.rpc.call(
      (id) => ({ type: "run", id, batch, n, texture }) satisfies InferenceRequest,
      [batch.buffer as ArrayBuffer],
    );
  }

  /**
   * Fails pending calls at once and ends the worker. It is asked to exit after the run it is in rather
   * than terminated: `worker.terminate()` during onnxruntime's native `run` aborts the whole process
   * ("terminate called after throwing an instance of 'Napi::Error'").
   */
  async stop(why: string): Promise<void> {
    this.stopped ??= why;
    this.rpc.failAll(stoppedError(this.stopped));
    // Kept referenced so a process waiting on close() does not exit under the worker (same abort).
    this.worker.ref();
    this.worker.postMessage({ type: "exit" } satisfies InferenceRequest);
    await this.exited;
  }

  /** An idle worker does not keep the process alive (a CLI that never calls close still exits). */
  private unrefWhenIdle() {
    if (this.rpc.waiting === 0) this.worker.unref();
  }
}

/** An {@link EmbeddingModel} whose session lives in an inference worker, replaced when it dies. */
class WorkerEmbeddingModel implements EmbeddingModel {
  private closed = false;
  /**
   * The last batch buffer the worker handed back. Filling a fresh 3-10 MB buffer costs the main thread
   * page faults, so batches reuse it.
   */
  private spare: ArrayBuffer | undefined;

  constructor(
    readonly modelId: string,
    readonly textureDimension: number,
    private readonly model: ModelConfig,
    private readonly workerData: InferenceWorkerData,
    private channel: InferenceChannel,
  ) {}

  get dimension() {
    return this.model.dimension;
  }

  get textureModelId(): string | null {
    return this.textureDimension > 0 ? `${this.modelId}#texture@${this.model.textureTensor}` : null;
  }

  /** The current worker, or a new one (with a new session) when the last one died. */
  private async live(): Promise<InferenceChannel> {
    if (!this.channel.alive) this.channel = new InferenceChannel(this.workerData);
    const channel = this.channel;
    try {
      await channel.ready;
    } catch (e) {
      throw errors.featureExtractionFailed(
        `The inference worker could not be restarted (${(e as Error).message}); the request can be retried.`,
        e,
      );
    }
    return channel;
  }

  // Arrow properties, as the object literal this replaced had: callers pass `model.close` around unbound.
  readonly embed = async (inputs: readonly ModelInput[]): Promise<Float32Array[]> =>
    (await this.embedDetailed(inputs)).embeddings;

  /**
   * Calls waiting for the model (dynamic batching): while a run is in the worker, calls queue here and the
   * next run takes as many of them as fit in `dynamicBatching.maxBatch` images (Triton's dynamic batcher;
   * admission control upstream bounds the queue). Each call is answered from its own rows of the run.
   */
  private readonly waiting: {
    inputs: readonly ModelInput[];
    texture: boolean;
    resolve: (out: { embeddings: Float32Array[]; textures: Float32Array[] | null }) => void;
    reject: (e: Error) => void;
  }[] = [];
  private running = false;
  private delayTimer: NodeJS.Timeout | undefined;
  private readonly counts = { runs: 0, inputs: 0 };

  get runStats(): { readonly runs: number; readonly inputs: number } {
    return { ...this.counts };
  }

  readonly embedDetailed = (
    inputs: readonly ModelInput[],
    { texture: wanted = true }: { texture?: boolean } = {},
  ): Promise<{ embeddings: Float32Array[]; textures: Float32Array[] | null }> => {
    const texture = wanted && this.textureDimension > 0;
    if (inputs.length === 0) return Promise.resolve({ embeddings: [], textures: texture ? [] : null });
    if (this.closed) return Promise.reject(stoppedError("the embedding model was closed"));
    return new Promise((resolve, reject) => {
      this.waiting.push({ inputs, texture, resolve, reject });
      this.dispatch(false);
    });
  };

  /**
   * Starts the next run when the model is free: at once when `maxQueueDelayUs` is 0, when the waiting
   * calls fill a batch, or when the delay since the first of them has passed (`force`).
   */
  private dispatch(force: boolean): void {
    if (this.running || this.waiting.length === 0) return;
    const { maxBatch, maxQueueDelayUs } = this.model.dynamicBatching;
    const queued = this.waiting.reduce((n, w) => n + w.inputs.length, 0);
    if (!force && maxQueueDelayUs > 0 && queued < maxBatch) {
      this.delayTimer ??= setTimeout(() => {
        this.delayTimer = undefined;
        this.dispatch(true);
      }, maxQueueDelayUs / 1000);
      return;
    }
    if (this.delayTimer) clearTimeout(this.delayTimer);
    this.delayTimer = undefined;
    const group = [this.waiting.shift() as (typeof this.waiting)[number]];
    let images = group[0]?.inputs.length ?? 0;
    while (this.waiting.length > 0 && images + (this.waiting[0]?.inputs.length ?? 0) <= maxBatch) {
      const next = this.waiting.shift() as (typeof this.waiting)[number];
      images += next.inputs.length;
      group.push(next);
    }
    this.running = true;
    void this.runGroup(group).finally(() => {
      this.running = false;
      this.dispatch(false);
    });
  }

  /**
   * One run for the calls of `group`, each answered from its own rows. When the run fails as a whole,
   * each call of a group of several runs again alone, so a bad input fails only its own call.
   */
  private async runGroup(group: typeof this.waiting): Promise<void> {
    let out: Awaited<ReturnType<typeof this.runBatch>>;
    try {
      out = await this.runBatch(
        group.flatMap((g) => g.inputs),
        group.some((g) => g.texture),
      );
    } catch (e) {
      if (group.length === 1 || this.closed || !this.channel.alive) {
        for (const g of group) g.reject(e as Error);
        return;
      }
      for (const g of group) {
        try {
          g.resolve(this.answer(await this.runBatch(g.inputs, g.texture), 0, g.inputs.length, g.texture));
        } catch (one) {
          g.reject(one as Error);
        }
      }
      return;
    }
    let row = 0;
    for (const g of group) {
      try {
        g.resolve(this.answer(out, row, g.inputs.length, g.texture));
      } catch (e) {
        g.reject(e as Error);
      }
      row += g.inputs.length;
    }
  }

  /**
   * Rows `first .. first + count` of a run's output as one call's answer: L2-normalised embeddings and
   * texture descriptors.
   * @throws DomainError FEATURE_EXTRACTION_FAILED for an all-zero or non-finite embedding.
   */
  private answer(
    out: { data: Float32Array; texture: Float32Array | undefined },
    first: number,
    count: number,
    withTexture: boolean,
  ): { embeddings: Float32Array[]; textures: Float32Array[] | null } {
    const dim = this.model.dimension;
    const embeddings = Array.from({ length: count }, (_, k) => {
      const i = first + k;
      const v = out.data.slice(i * dim, (i + 1) * dim);
      if (!l2NormalizeInPlace(v)) {
        throw errors.featureExtractionFailed(
          "The model returned an all-zero or non-finite embedding for this image.",
        );
      }
      return v;
    });
    const t = this.textureDimension;
    const texture = out.texture;
    const textures =
      texture && withTexture
        ? Array.from({ length: count }, (_, k) => texture.slice((first + k) * t, (first + k + 1) * t))
        : null;
    return { embeddings, textures };
  }

  /**
   * Runs concatenated inputs in the worker.
   * @returns the raw output tensor (inputs x dimension) and, `withTexture`, texture descriptors.
   * @throws DomainError FEATURE_EXTRACTION_FAILED when the run fails or the output has another dimension.
   */
  private async runBatch(
    inputs: readonly ModelInput[],
    withTexture: boolean,
  ): Promise<{ data: Float32Array; texture: Float32Array | undefined }> {
    // Without an await on the usual path, the batch is in the worker when this returns its promise.
    const channel = this.channel.serving ? this.channel : await this.live();
    const size = this.model.inputSize;
    const per = 3 * size * size;
    // A buffer nothing else holds, so it can be transferred to the worker instead of copied.
    const length = per * inputs.length;
    const spare = this.spare && this.spare.byteLength >= length ? this.spare : undefined;
    if (spare) this.spare = undefined;
    const batch = spare ? new Uint8Array(spare, 0, length) : new Uint8Array(length);
    let data: Float32Array;
    let texture: Float32Array | undefined;
    try {
      inputs.forEach((t, i) => {
        if (t.length !== per) throw new Error(`an input has ${t.length} bytes, not 3 x ${size} x ${size}`);
        batch.set(t, i * per);
      });
      this.counts.runs++;
      this.counts.inputs += inputs.length;
      const out = await channel.run(batch, inputs.length, withTexture);
      data = out.data;
      texture = out.texture;
      const back = out.batch.buffer as ArrayBuffer;
      if (!this.spare || back.byteLength > this.spare.byteLength) this.spare = back;
    } catch (e) {
      if (isDomainError(e)) throw e;
      throw errors.featureExtractionFailed(
        `The model could not compute an embedding (${(e as Error).message}). Check the model preset's input size and names.`,
        e,
      );
    }
    const dim = data.length / inputs.length;
    if (dim !== this.model.dimension) {
      throw errors.featureExtractionFailed(
        `The model returned ${dim}-d embeddings but ${this.model.dimension} are configured; set MODEL_DIMENSION or pick the right preset.`,
      );
    }
    return { data, texture };
  }

  readonly close = async (): Promise<void> => {
    this.closed = true;
    if (this.delayTimer) clearTimeout(this.delayTimer);
    for (const w of this.waiting.splice(0)) w.reject(stoppedError("the embedding model was closed"));
    await this.channel.stop("the embedding model was closed");
  };

  /** For tests: ends the worker as a crash would for callers; the next {@link embed} starts a new one. */
  killWorkerForTest(): Promise<void> {
    return this.channel.stop("killed by a test");
  }
}

/**
 * Loads the ONNX model with onnxruntime-node (CPU) in an inference worker thread and checks its
 * input/output names there. Inference runs in that worker, so it never blocks the event loop.
 * @param sha256 - of the model file, for the model id.
 * @throws Error when the file cannot be loaded or lacks the configured input/output.
 */
export async function loadEmbeddingModel(model: ModelConfig, sha256: string): Promise<EmbeddingModel> {
  const workerData: InferenceWorkerData = {
    path: model.path,
    threads: model.threads,
    inputName: model.inputName,
    outputName: model.outputName,
    inputSize: model.inputSize,
    mean: model.mean,
    std: model.std,
    textureTensor: model.textureTensor,
    textureRequired: model.textureRequired,
  };
  const channel = new InferenceChannel(workerData);
  const textureDimension = await channel.ready;
  const preprocessing = JSON.stringify([
    model.inputName,
    model.outputName,
    model.inputSize,
    model.resizeShorterSide,
    model.resizeKernel,
    model.mean,
    model.std,
    // Only when on, so single-view ids (and the vectors stored under them) stay what they were.
    ...(model.resizeMode !== "crop" ? [[model.resizeMode]] : []),
    ...(model.views.grid > 1 ? [["views", model.views.grid, model.views.size, model.views.pool]] : []),
  ]);
  const preprocessingHash = createHash("sha256").update(preprocessing).digest("hex").slice(0, 6);
  const modelId = `${model.name}@${sha256.slice(0, 12)}.${preprocessingHash}`;
  return new WorkerEmbeddingModel(modelId, textureDimension, model, workerData, channel);
}

/**
 * For tests: ends the inference worker behind `model` as a crash would for its callers: pending calls fail
 * with FEATURE_EXTRACTION_FAILED at once and the next embed starts a new worker. A run already in the
 * worker finishes before the thread exits (see {@link InferenceChannel.stop}).
 */
export function killInferenceWorkerForTest(model: EmbeddingModel): Promise<void> {
  if (!(model instanceof WorkerEmbeddingModel)) throw new Error("not a worker-backed embedding model");
  return model.killWorkerForTest();
}
