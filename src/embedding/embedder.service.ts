import type { ModelConfig } from "../config/config.js";
import { isDomainError } from "../shared/errors.js";
import type { EmbeddingModel } from "./embedding.model.js";
import { type ImageInfo, type ImageLimits, inspectImage, preprocessImage } from "./image.decoder.js";

/** Timing of one query embedding (ms). */
export interface EmbedTiming {
  decodeMs: number;
  inferenceMs: number;
}

/** The per-image outcome of a batch embedding: a vector, or the error that image caused. */
export type EmbedOutcome =
  | { ok: true; embedding: Float32Array; info: ImageInfo }
  | { ok: false; error: Error };

type Prepared = { ok: true; info: ImageInfo; tensor: Float32Array } | { ok: false; error: Error };

/**
 * Image bytes in, embeddings out: validation, decoding, preprocessing and inference in one place, so
 * ingestion, rebuilds, search and the evaluation all embed the same way.
 */
export function createEmbedder({
  model,
  modelConfig,
  limits,
}: {
  model: EmbeddingModel;
  modelConfig: ModelConfig;
  limits: ImageLimits;
}) {
  return {
    modelId: model.modelId,
    dimension: model.dimension,

    /**
     * Embeds one query image.
     * @returns an L2-normalised `Float32Array` of length `dimension`, with timings.
     * @throws DomainError IMAGE_TOO_LARGE, INVALID_IMAGE_FORMAT, FEATURE_EXTRACTION_FAILED.
     */
    async embedOne(
      bytes: Buffer,
    ): Promise<{ embedding: Float32Array; info: ImageInfo; timing: EmbedTiming }> {
      const t0 = performance.now();
      const info = await inspectImage(bytes, limits);
      const tensor = await preprocessImage(bytes, info, modelConfig);
      const t1 = performance.now();
      const [embedding] = await model.embed([tensor]);
      const t2 = performance.now();
      if (!embedding) throw new Error("model returned no embedding");
      return { embedding, info, timing: { decodeMs: t1 - t0, inferenceMs: t2 - t1 } };
    },

    /**
     * Embeds many images in batches of the configured size; one bad image fails only itself.
     * @returns one outcome per input, in order.
     */
    async embedMany(items: readonly Buffer[]): Promise<EmbedOutcome[]> {
      const outcomes: EmbedOutcome[] = new Array(items.length);
      const prepare = (start: number) =>
        Promise.all(
          items.slice(start, start + modelConfig.batchSize).map(async (bytes): Promise<Prepared> => {
            try {
              const info = await inspectImage(bytes, limits);
              return { ok: true, info, tensor: await preprocessImage(bytes, info, modelConfig) };
            } catch (e) {
              return { ok: false, error: e as Error };
            }
          }),
        );
      // Decoding (sharp's threads) of the next batch overlaps inference (onnxruntime's threads) of this one.
      let next = items.length > 0 ? prepare(0) : undefined;
      for (let start = 0; next; start += modelConfig.batchSize) {
        const prepared = await next;
        const following = start + modelConfig.batchSize;
        next = following < items.length ? prepare(following) : undefined;
        const ready = prepared.flatMap((p, i) => (p.ok ? [{ i, info: p.info, tensor: p.tensor }] : []));
        let vectors: Float32Array[] = [];
        let batchError: Error | undefined;
        try {
          vectors = await model.embed(ready.map((r) => r.tensor));
        } catch (e) {
          if (!isDomainError(e)) throw e;
          batchError = e;
        }
        prepared.forEach((p, i) => {
          if (!p.ok) outcomes[start + i] = { ok: false, error: p.error };
        });
        ready.forEach((r, k) => {
          const v = vectors[k];
          outcomes[start + r.i] =
            v && !batchError
              ? { ok: true, embedding: v, info: r.info }
              : { ok: false, error: batchError ?? new Error("no embedding") };
        });
      }
      return outcomes;
    },
  };
}

/** The embedder's type, derived from its factory. */
export type Embedder = ReturnType<typeof createEmbedder>;
