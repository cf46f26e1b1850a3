import { type TypePrior, typeLean, typeShift } from "../adapted/type-prior.js";
import type { GalleryEntry } from "../index/gallery-entry.js";
import type { ImageType } from "../shared/types.js";
import type { EmbeddingSpace } from "./adaptation.service.js";

/** One ranked match of a gallery image. */
export interface Match {
  entry: GalleryEntry;
  /** Cosine similarity in [-1, 1]. */
  score: number;
}

/** A match with the space that ranked it (both image types may be ranked in different spaces). */
export type SpacedMatch = Match & { space: EmbeddingSpace };

/** One ranking over the searched indexes: their summed size, and `adapted` when any was ranked there. */
export interface MergedMatches {
  matches: SpacedMatch[];
  indexSize: number;
  space: EmbeddingSpace;
}

/**
 * One ranking from the searches of one or both image types. With a type prior, each hit is ranked by its
 * similarity shifted by `typeShift` (towards the type the query leans to); the reported score stays the
 * similarity. Without one, hits are merged by similarity.
 * @param query - the query image's own descriptors: the prior leans by them, even for an expanded query.
 * @param topK - hits kept of a merge of two types; a single type's matches are kept as they are.
 */
export function mergeByType(
  searched: readonly {
    imageType: ImageType;
    matches: Match[];
    indexSize: number;
    space: EmbeddingSpace;
  }[],
  prior: TypePrior | null,
  query: { embedding: Float32Array; texture: Float32Array | null },
  topK: number,
): MergedMatches {
  const first = searched[0];
  if (searched.length === 1 && first) {
    return {
      matches: first.matches.map((m) => ({ ...m, space: first.space })),
      indexSize: first.indexSize,
      space: first.space,
    };
  }
  // The prior was learned on the adapted defect scores: it applies only where those were searched.
  const applies = prior !== null && searched.some((s) => s.imageType === "defect" && s.space === "adapted");
  const descriptor = prior?.descriptor === "texture" ? query.texture : query.embedding;
  const lean = applies && prior && descriptor?.length === prior.inDim ? typeLean(prior, descriptor) : 0;
  const ranked = searched.flatMap((s) =>
    s.matches.map((m) => ({
      ...m,
      space: s.space,
      rankScore: m.score + (applies && prior ? typeShift(prior, lean, s.imageType === "defect") : 0),
    })),
  );
  ranked.sort((a, b) => b.rankScore - a.rankScore);
  return {
    matches: ranked.slice(0, topK).map(({ rankScore: _r, ...m }) => m),
    indexSize: searched.reduce((n, s) => n + s.indexSize, 0),
    space: searched.some((s) => s.space === "adapted") ? "adapted" : "raw",
  };
}
