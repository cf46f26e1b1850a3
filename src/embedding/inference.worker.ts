/**
 * The inference worker: the only place onnxruntime-node is loaded. onnxruntime-node's `session.run` is a
 * synchronous native call behind a `setImmediate` (microsoft/onnxruntime#26968, #19610), so on the main
 * thread every batch would stall every other request; here it stalls only this thread.
 *
 * It creates one session from {@link InferenceWorkerData}, posts {@link InferenceWorkerStatus}, then
 * answers each {@link InferenceRequest} with one {@link InferenceReply} carrying the raw output tensor.
 * Checking and normalising the embeddings is the main thread's job (`embedding.model.ts`).
 */

import { readFile } from "node:fs/promises";
import { parentPort, workerData } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import { normalisationTable, normaliseBatch } from "./model-input.js";
import { exposeTextureTensor, TEXTURE_OUTPUT, textureDescriptors } from "./texture.js";

/** What the worker is started with (`workerData`). */
export interface InferenceWorkerData {
  /** Absolute path of the ONNX file. */
  path: string;
  /** onnxruntime intra-op threads. */
  threads: number;
  inputName: string;
  outputName: string;
  /**
   * Side of the square input (pixels): requests carry 8-bit interleaved RGB squares (`model-input.ts`),
   * the session gets float32 NCHW `[n, 3, inputSize, inputSize]` normalised with `mean` and `std`.
   */
  inputSize: number;
  /** Per-channel mean and std of the model's normalisation (of values scaled to [0, 1]). */
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
  /** A 4-D tensor inside the graph to describe as texture (`texture.ts`); unset: no texture output. */
  textureTensor?: string | undefined;
  /** Fail to load when the texture tensor is missing (it was configured explicitly), else go without. */
  textureRequired?: boolean;
}

/**
 * The worker's first message: the session is ready (with the texture descriptor's length, 0 without a
 * texture tensor), or could not be created (`message` says why).
 */
export type InferenceWorkerStatus =
  | { type: "ready"; textureDimension: number }
  | { type: "init-error"; message: string };

/**
 * A request: `run` a batch of `n` model inputs (`ModelInput`s, concatenated; its buffer is transferred),
 * or `exit` once every request sent before it is answered.
 */
export type InferenceRequest =
  | {
      type: "run";
      id: number;
      batch: Uint8Array;
      n: number;
      /** Whether the reply carries texture descriptors (when the model has a texture tensor). */
      texture: boolean;
    }
  | { type: "exit" };

/**
 * The output tensor's data (`n` x dimension, row-major), or why the run failed. A successful reply also
 * hands the request's batch back, for the next request to reuse; both buffers are transferred.
 */
export type InferenceReply =
  | {
      type: "reply";
      id: number;
      ok: true;
      data: Float32Array;
      batch: Uint8Array;
      /** `n` x textureDimension texture descriptors, when a texture tensor is configured. */
      texture?: Float32Array;
    }
  | { type: "reply"; id: number; ok: false; message: string };

async function createSession(config: InferenceWorkerData): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: config.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    // Idle intra-op threads would otherwise spin, taking the cores sharp needs to decode the next batch.
    extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
  };
  let withTexture: Uint8Array | undefined;
  if (config.textureTensor) {
    try {
      withTexture = exposeTextureTensor(await readFile(config.path), config.textureTensor);
    } catch (e) {
      // A preset's tensor missing from another file of that model: run without texture descriptors.
      if (config.textureRequired) throw e;
    }
  }
  let session: ort.InferenceSession | undefined;
  if (withTexture) {
    try {
      session = await ort.InferenceSession.create(withTexture, options);
    } catch (e) {
      // onnxruntime refused the edited graph: the model as it is still embeds.
      if (config.textureRequired) throw e;
    }
  }
  session ??= await ort.InferenceSession.create(config.path, options);
  if (!session.inputNames.includes(config.inputName)) {
    throw new Error(
      `Model ${config.path} has no input '${config.inputName}' (it has ${session.inputNames.join(", ")}); set MODEL_INPUT_NAME.`,
    );
  }
  if (!session.outputNames.includes(config.outputName)) {
    throw new Error(
      `Model ${config.path} has no output '${config.outputName}' (it has ${session.outputNames.join(", ")}); set MODEL_OUTPUT_NAME.`,
    );
  }
  return session;
}

async function run(
  session: ort.InferenceSession,
  config: InferenceWorkerData,
  req: Extract<InferenceRequest, { type: "run" }>,
): Promise<InferenceReply> {
  try {
    const size = config.inputSize;
    const input = new ort.Tensor("float32", floatBatch(req, size), [req.n, 3, size, size]);
    // The texture map is not fetched when unwanted: no copy of it out of the session, no descriptor.
    const outputs = textureOn && req.texture ? [config.outputName, TEXTURE_OUTPUT] : [config.outputName];
    const result = await session.run({ [config.inputName]: input }, outputs);
    const out = result[config.outputName];
    if (!out) return { type: "reply", id: req.id, ok: false, message: `no '${config.outputName}' output` };
    const map = result[TEXTURE_OUTPUT];
    const texture = map ? describeTexture(map, req.n) : undefined;
    return { type: "reply", id: req.id, ok: true, data: out.data as Float32Array, batch: req.batch, texture };
  } catch (e) {
    return { type: "reply", id: req.id, ok: false, message: (e as Error).message };
  }
}

/**
 * The request's pixels as the session's float input, written into a buffer kept between runs (a fresh
 * one per run costs page faults: about 40 ms for 64 images against 8 ms reused, on 2 cores).
 */
function floatBatch(req: Extract<InferenceRequest, { type: "run" }>, size: number): Float32Array {
  const length = req.n * 3 * size * size;
  if (!floats || floats.length < length) floats = new Float32Array(length);
  const out = floats.length === length ? floats : new Float32Array(floats.buffer, 0, length);
  normaliseBatch(req.batch, req.n, size, table, out);
  return out;
}

/** Texture descriptors of a `[n, channels, height, width]` map (computed here, off the main thread). */
function describeTexture(map: ort.Tensor, n: number): Float32Array {
  if (map.dims.length !== 4 || map.dims[0] !== n) {
    throw new Error(
      `the texture tensor has shape [${map.dims.join(", ")}], not [batch, channels, height, width]`,
    );
  }
  return textureDescriptors(map.data as Float32Array, n, map.dims[1] as number);
}

/**
 * Length of the texture descriptor: one run on a blank image (0 without a texture tensor). A run that
 * fails (e.g. an input size the model cannot take) turns texture descriptors off, unless they were asked
 * for explicitly; embedding runs then report the problem as they would without them.
 */
async function textureDimension(session: ort.InferenceSession, config: InferenceWorkerData): Promise<number> {
  if (!session.outputNames.includes(TEXTURE_OUTPUT)) return 0;
  const size = config.inputSize;
  try {
    const blank = new ort.Tensor("float32", new Float32Array(3 * size * size), [1, 3, size, size]);
    const map = (await session.run({ [config.inputName]: blank }, [TEXTURE_OUTPUT]))[TEXTURE_OUTPUT];
    if (!map) throw new Error(`the model gave no '${TEXTURE_OUTPUT}' output`);
    const length = describeTexture(map, 1).length;
    textureOn = true;
    return length;
  } catch (e) {
    if (config.textureRequired) throw e;
    return 0;
  }
}

if (!parentPort) throw new Error("inference.worker.ts must run in a worker thread");
const port = parentPort;
const config = workerData as InferenceWorkerData;
let session: ort.InferenceSession | undefined;
const table = normalisationTable(config);
/** The float input buffer, grown to the largest batch run so far. */
let floats: Float32Array | undefined;
/** Whether runs also fetch the texture map (set once the texture output proved usable). */
let textureOn = false;

async function handle(req: InferenceRequest): Promise<void> {
  if (req.type === "exit") {
    await session?.release();
    // Ending here, between native calls, is safe; worker.terminate() during session.run aborts the process.
    process.exit(0);
  }
  if (!session) {
    port.postMessage({ type: "reply", id: req.id, ok: false, message: "the model is not loaded" });
    return;
  }
  const reply = await run(session, config, req);
  try {
    port.postMessage(
      reply,
      reply.ok
        ? [
            reply.data.buffer as ArrayBuffer,
            reply.batch.buffer as ArrayBuffer,
            ...(reply.texture ? [reply.texture.buffer as ArrayBuffer] : []),
          ]
        : [],
    );
  } catch {
    // A buffer onnxruntime does not let go of is copied instead.
    port.postMessage(reply);
  }
}

// One request at a time, in arrival order, the first after the session is created (or failed to be).
let queue: Promise<void> = createSession(config)
  .then(async (s) => ({ s, textureDimension: await textureDimension(s, config) }))
  .then(
    ({ s, textureDimension }) => {
      session = s;
      port.postMessage({ type: "ready", textureDimension } satisfies InferenceWorkerStatus);
    },
    (e: Error) => {
      port.postMessage({ type: "init-error", message: e.message } satisfies InferenceWorkerStatus);
    },
  );
port.on("message", (req: InferenceRequest) => {
  queue = queue
    .then(() => handle(req))
    .catch((e: Error) => {
      // An unanswered request would leave its caller waiting for good.
      if (req.type === "run") port.postMessage({ type: "reply", id: req.id, ok: false, message: e.message });
    });
});
