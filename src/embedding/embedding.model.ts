import { createHash } from "node:crypto";
import * as ort from "onnxruntime-node";
import type { ModelConfig } from "../config/config.js";
import { errors } from "../shared/errors.js";

/** An ONNX image encoder loaded once; turns preprocessed tensors into L2-normalised embeddings. */
export interface EmbeddingModel {
  /**
   * `<preset>@<first 12 hex of the model file's sha256>.<first 6 hex of the preprocessing's hash>`; keys
   * stored embeddings, so another model file or another preprocessing never reuses old vectors.
   */
  readonly modelId: string;
  /** Embedding length. */
  readonly dimension: number;
  /**
   * Runs the model on a batch.
   * @param inputs - each a `Float32Array` of length 3 x inputSize x inputSize from `preprocessImage`.
   * @returns one L2-normalised `Float32Array` of length {@link dimension} per input, in order.
   * @throws DomainError FEATURE_EXTRACTION_FAILED when inference fails or yields a non-finite or zero vector.
   */
  embed(inputs: readonly Float32Array[]): Promise<Float32Array[]>;
  close(): Promise<void>;
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

/**
 * Loads the ONNX model with onnxruntime-node (CPU) and checks its input/output names.
 * @param sha256 - of the model file, for the model id.
 * @throws Error when the file cannot be loaded or lacks the configured input/output.
 */
export async function loadEmbeddingModel(model: ModelConfig, sha256: string): Promise<EmbeddingModel> {
  const session = await ort.InferenceSession.create(model.path, {
    intraOpNumThreads: model.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    // Idle intra-op threads would otherwise spin, taking the cores sharp needs to decode the next batch.
    extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
  });
  if (!session.inputNames.includes(model.inputName)) {
    throw new Error(
      `Model ${model.path} has no input '${model.inputName}' (it has ${session.inputNames.join(", ")}); set MODEL_INPUT_NAME.`,
    );
  }
  if (!session.outputNames.includes(model.outputName)) {
    throw new Error(
      `Model ${model.path} has no output '${model.outputName}' (it has ${session.outputNames.join(", ")}); set MODEL_OUTPUT_NAME.`,
    );
  }
  const preprocessing = JSON.stringify([
    model.inputName,
    model.outputName,
    model.inputSize,
    model.resizeShorterSide,
    model.resizeKernel,
    model.mean,
    model.std,
  ]);
  const preprocessingHash = createHash("sha256").update(preprocessing).digest("hex").slice(0, 6);
  const size = model.inputSize;
  const per = 3 * size * size;
  return {
    modelId: `${model.name}@${sha256.slice(0, 12)}.${preprocessingHash}`,
    dimension: model.dimension,
    async embed(inputs) {
      if (inputs.length === 0) return [];
      const batch = new Float32Array(per * inputs.length);
      inputs.forEach((t, i) => {
        batch.set(t, i * per);
      });
      let out: ort.Tensor | undefined;
      try {
        const feeds = { [model.inputName]: new ort.Tensor("float32", batch, [inputs.length, 3, size, size]) };
        const result = await session.run(feeds, [model.outputName]);
        out = result[model.outputName];
      } catch (e) {
        throw errors.featureExtractionFailed(
          `The model could not compute an embedding (${(e as Error).message}). Check the model preset's input size and names.`,
          e,
        );
      }
      if (!out) throw errors.featureExtractionFailed(`The model returned no '${model.outputName}' output.`);
      const data = out.data as Float32Array;
      const dim = data.length / inputs.length;
      if (dim !== model.dimension) {
        throw errors.featureExtractionFailed(
          `The model returned ${dim}-d embeddings but ${model.dimension} are configured; set MODEL_DIMENSION or pick the right preset.`,
        );
      }
      return inputs.map((_, i) => {
        const v = data.slice(i * dim, (i + 1) * dim);
        if (!l2NormalizeInPlace(v)) {
          throw errors.featureExtractionFailed(
            "The model returned an all-zero or non-finite embedding for this image.",
          );
        }
        return v;
      });
    },
    close: () => session.release(),
  };
}
