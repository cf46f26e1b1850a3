/**
 * The inference worker: the only place onnxruntime-node is loaded. onnxruntime-node's `session.run` is a
 * synchronous native call behind a `setImmediate` (microsoft/onnxruntime#26968, #19610), so on the main
 * thread every batch would stall every other request; here it stalls only this thread.
 *
 * It creates one session from {@link InferenceWorkerData}, posts {@link InferenceWorkerStatus}, then
 * answers each {@link InferenceRequest} with one {@link InferenceReply} carrying the raw output tensor.
 * Checking and normalising the embeddings is the main thread's job (`embedding.model.ts`).
 */
import { parentPort, workerData } from "node:worker_threads";
import * as ort from "onnxruntime-node";

/** What the worker is started with (`workerData`). */
export interface InferenceWorkerData {
  /** Absolute path of the ONNX file. */
  path: string;
  /** onnxruntime intra-op threads. */
  threads: number;
  inputName: string;
  outputName: string;
  /** Side of the square input (pixels); inputs are float32 NCHW `[n, 3, inputSize, inputSize]`. */
  inputSize: number;
}

/** The worker's first message: the session is ready, or could not be created (`message` says why). */
export type InferenceWorkerStatus = { type: "ready" } | { type: "init-error"; message: string };

/**
 * A request: `run` a batch of `n` preprocessed images, concatenated (its buffer is transferred), or
 * `exit` once every request sent before it is answered.
 */
export type InferenceRequest = { type: "run"; id: number; batch: Float32Array; n: number } | { type: "exit" };

/**
 * The output tensor's data (`n` x dimension, row-major), or why the run failed. A successful reply also
 * hands the request's batch back, for the next request to reuse; both buffers are transferred.
 */
export type InferenceReply =
  | { type: "reply"; id: number; ok: true; data: Float32Array; batch: Float32Array }
  | { type: "reply"; id: number; ok: false; message: string };

async function createSession(config: InferenceWorkerData): Promise<ort.InferenceSession> {
  const session = await ort.InferenceSession.create(config.path, {
    intraOpNumThreads: config.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    // Idle intra-op threads would otherwise spin, taking the cores sharp needs to decode the next batch.
    extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
  });
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
    const input = new ort.Tensor("float32", req.batch, [req.n, 3, size, size]);
    const result = await session.run({ [config.inputName]: input }, [config.outputName]);
    const out = result[config.outputName];
    if (!out) return { type: "reply", id: req.id, ok: false, message: `no '${config.outputName}' output` };
    return { type: "reply", id: req.id, ok: true, data: out.data as Float32Array, batch: req.batch };
  } catch (e) {
    return { type: "reply", id: req.id, ok: false, message: (e as Error).message };
  }
}

if (!parentPort) throw new Error("inference.worker.ts must run in a worker thread");
const port = parentPort;
const config = workerData as InferenceWorkerData;
let session: ort.InferenceSession | undefined;

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
      reply.ok ? [reply.data.buffer as ArrayBuffer, reply.batch.buffer as ArrayBuffer] : [],
    );
  } catch {
    // A buffer onnxruntime does not let go of is copied instead.
    port.postMessage(reply);
  }
}

// One request at a time, in arrival order, the first after the session is created (or failed to be).
let queue: Promise<void> = createSession(config).then(
  (s) => {
    session = s;
    port.postMessage({ type: "ready" } satisfies InferenceWorkerStatus);
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
