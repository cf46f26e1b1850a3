import { siblingModule, startModuleWorker } from "../shared/module-worker.js";
import type { AdaptationDecision, GateSettings, TrainingTextures } from "./cross-validation.js";
import type { Projection } from "./projection.js";

/** A request to the adaptation worker. */
export type AdaptationRequest =
  | {
      kind: "decide";
      vectors: Float32Array;
      rowIds?: Int32Array | undefined;
      dim: number;
      labels: readonly string[];
      isDefect?: readonly boolean[] | undefined;
      textures?: TrainingTextures | undefined;
      settings?: GateSettings | undefined;
    }
  | { kind: "adapt"; projection: Projection; vectors: Float32Array };

/**
 * Runs one request in a fresh worker thread (the work is seconds long; a thread start is milliseconds).
 * The worker ends itself after its reply and is never terminated from here: it runs onnxruntime
 * (`dense.ts`), and `worker.terminate()` during a native onnxruntime call aborts the whole process (see
 * `embedding.model.ts`). It stays referenced, so the process does not exit under it either.
 */
function inWorker<T>(req: AdaptationRequest, transfer: ArrayBuffer[]): Promise<T> {
  const worker = startModuleWorker(siblingModule(import.meta.url, "adaptation.worker"));
  return new Promise<T>((resolve, reject) => {
    worker.once("message", (m: { ok: true; value: T } | { ok: false; error: string }) => {
      if (m.ok) resolve(m.value);
      else reject(new Error(`adapted space: ${m.error}`));
    });
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`adaptation worker exited with code ${code}`)));
    worker.postMessage(req, transfer);
  });
}

/**
 * {@link decideAdaptation} in a worker thread, so the event loop keeps serving searches meanwhile.
 * `vectors` and the textures' vectors are transferred (detached here).
 */
export function decideAdaptationOffThread(
  args: Omit<Extract<AdaptationRequest, { kind: "decide" }>, "kind">,
) {
  return inWorker<{ decision: AdaptationDecision; projection: Projection | null }>(
    { kind: "decide", ...args },
    [
      args.vectors.buffer as ArrayBuffer,
      ...(args.rowIds ? [args.rowIds.buffer as ArrayBuffer] : []),
      ...(args.textures ? [args.textures.vectors.buffer as ArrayBuffer] : []),
    ],
  );
}

/** {@link adaptVectors} of a whole gallery in a worker thread; `vectors` is copied, not detached. */
export function adaptVectorsOffThread(projection: Projection, vectors: Float32Array): Promise<Float32Array> {
  return inWorker<Float32Array>({ kind: "adapt", projection, vectors }, []);
}
