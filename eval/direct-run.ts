import type { Embedder } from "../src/embedding/embedder.service.js";
import { packVectors } from "../src/matchers/gallery-source.js";
import type { EvalDataset, LoadedImage } from "./dataset.js";
import { exactRanking, type RankedQuery } from "./ranking.js";

/** Rankings by exact search over vectors computed outside the service. */
export interface DirectRun {
  /** Exact search over the whole gallery (both image types). */
  pooled: RankedQuery[];
  /** Exact search over the gallery images of the query's own image type. */
  ownType: RankedQuery[];
}

/** Turns images into L2-normalised vectors of one length. */
export type Featurizer = {
  dimension: number;
  gallery(images: readonly LoadedImage[]): Promise<Float32Array[]>;
  query(image: LoadedImage): Promise<Float32Array>;
};

/**
 * The model used directly: the service's embedder (same decoding and preprocessing) on the files, in
 * batches for the gallery and one at a time for queries, as ingestion and search do.
 * @throws Error when an image cannot be embedded.
 */
export function modelFeaturizer(embedder: Embedder): Featurizer {
  return {
    dimension: embedder.dimension,
    async gallery(images) {
      const outcomes = await embedder.embedMany(images.map((i) => i.bytes));
      return outcomes.map((o, i) => {
        if (!o.ok) throw new Error(`${images[i]?.relPath}: ${o.error.message}`);
        return o.embedding;
      });
    },
    query: async (image) => (await embedder.embedOne(image.bytes)).embedding,
  };
}

/** Vectors of a dataset's gallery and queries from one featurizer. */
export interface DatasetFeatures {
  dimension: number;
  gallery: Float32Array[];
  queries: Float32Array[];
  /** Time to compute them (ms). */
  featureMs: number;
}

/** Computes the vectors of every gallery and query image of `dataset`. */
export async function computeFeatures(
  dataset: EvalDataset,
  featurizer: Featurizer,
): Promise<DatasetFeatures> {
  const t0 = performance.now();
  const gallery = await featurizer.gallery(dataset.gallery);
  const queries: Float32Array[] = [];
  for (const q of dataset.queries) queries.push(await featurizer.query(q));
  return { dimension: featurizer.dimension, gallery, queries, featureMs: performance.now() - t0 };
}

/**
 * Ranks every query against the gallery with exact brute-force cosine similarity.
 * @param limit - ranks kept per image type before merging, like the service's topK (Infinity: all).
 */
export function rankExact(dataset: EvalDataset, features: DatasetFeatures, limit: number): DirectRun {
  const dim = features.dimension;
  const byType = [...new Set(dataset.gallery.map((g) => g.imageType))].map((t) => {
    const rows = dataset.gallery.flatMap((g, i) => (g.imageType === t ? [i] : []));
    return {
      type: t,
      rows,
      vectors: packVectors(
        rows.map((r) => features.gallery[r] as Float32Array),
        dim,
      ),
    };
  });
  const pooled: RankedQuery[] = [];
  const ownType: RankedQuery[] = [];
  const hash = (g: number) => (dataset.gallery[g] as LoadedImage).sha256;
  dataset.queries.forEach((query, qi) => {
    const qv = features.queries[qi] as Float32Array;
    const perType = byType.map(({ type, rows, vectors }) => {
      const r = exactRanking(vectors, dim, qv, limit);
      return {
        type,
        hits: r.rows.map((row, i) => ({ g: rows[row] as number, score: r.scores[i] as number })),
      };
    });
    const merged = perType.flatMap((p) => p.hits).sort((a, b) => b.score - a.score);
    pooled.push({ query, ranking: merged.map((h) => hash(h.g)), scores: merged.map((h) => h.score) });
    const own = perType.find((p) => p.type === query.imageType)?.hits ?? [];
    ownType.push({ query, ranking: own.map((h) => hash(h.g)), scores: own.map((h) => h.score) });
  });
  return { pooled, ownType };
}
