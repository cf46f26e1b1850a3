import type { ModelConfig } from "../config/config.js";
import { errors, isDomainError } from "../shared/errors.js";
import type { EmbeddingModel } from "./embedding.model.js";
import { type ImageInfo, type ImageLimits, inspectImage, preprocessViews } from "./image.decoder.js";
import type { ModelInput } from "./model-input.js";
import { poolViews, viewCount } from "./multi-view.js";

/** Timing of one query embedding (ms). */
export interface EmbedTiming {
  decodeMs: number;
  inferenceMs: number;
}

/** The per-image outcome of a batch embedding: a vector, or the error that image caused. */
export type EmbedOutcome =
  | {
      ok: true;
      embedding: Float32Array;
      /** Texture descriptor of the whole image (`texture.ts`), when the model has a texture tensor. */
      texture: Float32Array | null;
      info: ImageInfo;
    }
  | { ok: false; error: Error };

type Prepared = { ok: true; info: ImageInfo; tensors: ModelInput[] } | { ok: false; error: Error };

/**
 * Image bytes in, embeddings out: validation, decoding, preprocessing and inference in one place, so
 * ingestion, rebuilds, search and the evaluation all embed the same way.
 */
export function createEmbedder({
  model,
  modelConfig,
  limits,
  onEmbedded = () => {},
}: {
  model: EmbeddingModel;
  modelConfig: ModelConfig;
  limits: ImageLimits;
  /** Told how many embeddings each call computed (the embeddings counter); must return at once. */
  onEmbedded?: (count: number) => void;
}) {
  const views = modelConfig.views;
  const perImage = viewCount(views);
  /** One vector per image: the single view as is, several pooled (multi-view). */
  const pooled = (vectors: readonly Float32Array[]): Float32Array => {
    if (perImage === 1 && vectors[0]) return vectors[0];
    const v = poolViews(vectors, views.pool);
    if (!v)
      throw errors.featureExtractionFailed("The pooled multi-view embedding of this image is all zero.");
    return v;
  };
  // With multi-view a batch holds at most batchSize views (inference memory and time per run as without).
  const imagesPerBatch = Math.max(1, Math.floor(modelConfig.batchSize / perImage));
  return {
    modelId: model.modelId,
    dimension: model.dimension,
    /** Key of stored texture descriptors; null when the model has no texture tensor. */
    textureModelId: model.textureModelId,
    /** Texture descriptor length; 0 when the model has no texture tensor. */
    textureDimension: model.textureDimension,

    /** What it refuses an image by before decoding (bytes, pixels, shortest side). */
    limits,

    /** Views embedded per image (1, or 1 + grid² with multi-view); inference cost scales with it. */
    viewsPerImage: perImage,

    /**
     * Embeds one query image (all its views in one inference run, pooled).
     * @param options.texture - whether to compute the texture descriptor too (default true; a search that
     *   cannot lean by it leaves it out).
     * @returns an L2-normalised `Float32Array` of length `dimension`, the whole image's texture descriptor
     *   (null without a texture tensor or when not asked for), with timings.
     * @throws DomainError IMAGE_TOO_LARGE, INVALID_IMAGE_FORMAT, FEATURE_EXTRACTION_FAILED.
     */
    async embedOne(
      bytes: Buffer,
      { texture: withTexture = true }: { texture?: boolean } = {},
    ): Promise<{
      embedding: Float32Array;
      texture: Float32Array | null;
      info: ImageInfo;
      timing: EmbedTiming;
    }> {
      const t0 = performance.now();
      const info = await inspectImage(bytes, limits);
      const tensors = await preprocessViews(bytes, info, modelConfig);
      const t1 = performance.now();
      const { embeddings: vectors, textures } = await model.embedDetailed(tensors, { texture: withTexture });
      const t2 = performance.now();
      if (vectors.length !== perImage) throw new Error("model returned no embedding");
      const embedding = pooled(vectors);
      onEmbedded(1);
      return {
        embedding,
        texture: textures?.[0] ?? null,
        info,
        timing: { decodeMs: t1 - t0, inferenceMs: t2 - t1 },
      };
    },

    /**
     * Embeds many images in batches of the configured size (counted in views with multi-view); one bad
     * image fails only itself.
     * @returns one outcome per input, in order.
     */
    async embedMany(items: readonly Buffer[]): Promise<EmbedOutcome[]> {
      const outcomes: EmbedOutcome[] = new Array(items.length);
      const prepare = (start: number) =>
        Promise.all(
          items.slice(start, start + imagesPerBatch).map(async (bytes): Promise<Prepared> => {
            try {
              const info = await inspectImage(bytes, limits);
              return { ok: true, info, tensors: await preprocessViews(bytes, info, modelConfig) };
            } catch (e) {
              return { ok: false, error: e as Error };
            }
          }),
        );
      // Decoding (sharp's threads) of the next batch overlaps inference (onnxruntime's threads) of this one.
      let next = items.length > 0 ? prepare(0) : undefined;
      for (let start = 0; next; start += imagesPerBatch) {
        const prepared = await next;
        const following = start + imagesPerBatch;
        next = following < items.length ? prepare(following) : undefined;
        const ready = prepared.flatMap((p, i) => (p.ok ? [{ i, info: p.info, tensors: p.tensors }] : []));
        let vectors: Float32Array[] = [];
        let textures: (Float32Array | null)[] = [];
        let batchError: Error | undefined;
        try {
          const all = await model.embedDetailed(ready.flatMap((r) => r.tensors));
          vectors = ready.map((_, k) => pooled(all.embeddings.slice(k * perImage, (k + 1) * perImage)));
          // The whole image is each image's first view.
          textures = ready.map((_, k) => all.textures?.[k * perImage] ?? null);
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
              ? { ok: true, embedding: v, texture: textures[k] ?? null, info: r.info }
              : { ok: false, error: batchError ?? new Error("no embedding") };
        });
      }
      onEmbedded(outcomes.filter((o) => o.ok).length);
      return outcomes;
    },
  };
}

/** The embedder's type, derived from its factory. */
export type Embedder = ReturnType<typeof createEmbedder>;
