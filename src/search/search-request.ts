import type { SearchFilter } from "../index/gallery-columns.js";
import type { EmbeddingSpace } from "../matchers/matcher.js";
import { errors } from "../shared/errors.js";
import type { ImageType, MatcherVersion } from "../shared/types.js";

/** Where the query image comes from; exactly one field is set. */
export interface QueryImage {
  /** The image file's bytes (a multipart upload). */
  bytes?: Buffer | null;
  /** The image bytes, base64 (a `data:image/...;base64,` prefix is accepted). */
  base64?: string | null;
  /** Key of an object already in the service's bucket. */
  storageKey?: string | null;
  /** Id of a gallery image ("find similar"); the image itself is left out of the results. */
  galleryImageId?: number | null;
}

/**
 * A validated search request: the GraphQL edge (`src/graphql/search-input.ts`) parses the API's input into
 * it before admission. Its filters are the {@link SearchFilter} the matcher applies.
 */
export interface SearchRequest extends SearchFilter {
  image: QueryImage;
  /**
   * The gallery to search: `defect`, `normal`, or `all` (both, merged into one ranking; in the adapted
   * space with the learned type prior, when one is served).
   */
  imageType: ImageType | "all";
  /** Hits wanted, 1 to MAX_TOP_K. */
  topK: number;
  /** Overrides the active matcher for this request. */
  version?: MatcherVersion | null;
  /**
   * Space to rank in: `adapted` ("what defect is this?", learned from the gallery's labels) or `raw`
   * ("visually similar"); default SEARCH_DEFAULT_SPACE. `adapted` falls back to raw where none is served.
   */
  space?: EmbeddingSpace | null;
  /**
   * `defectType`: also answer the hits grouped by (product, defect type), so an inspector sees the
   * alternatives when the top of the ranking is all one type. Groups are formed from the best `maxTopK`
   * hits (the same filters apply).
   */
  groupBy?: "defectType" | null;
  /** Hits per group, 1 to {@link MAX_PER_GROUP} (default 3). */
  perGroup?: number | null;
}

/** Largest `perGroup` (the API documents 1 to 10). */
export const MAX_PER_GROUP = 10;

/** The query image sources a request sets (exactly one, in a valid request). */
export const imageSourcesOf = (image: QueryImage): number =>
  [image.bytes, image.base64, image.storageKey, image.galleryImageId].filter(
    (v) => v !== undefined && v !== null,
  ).length;

/**
 * Why a request is refused, one sentence per rule: the GraphQL edge's schema and the service's assertion
 * say the same.
 */
export const requestRefusals = {
  topK: (maxTopK: number, got: unknown) => `topK must be an integer from 1 to ${maxTopK}; got ${got}.`,
  minScore: (got: unknown) => `minScore is a cosine similarity, from -1 to 1; got ${got}.`,
  perGroup: (maxPerGroup: number, got: unknown) =>
    `perGroup must be an integer from 1 to ${maxPerGroup}; got ${got}.`,
  imageSources: () =>
    "Give exactly one of image.file, image.base64, image.storageKey or image.galleryImageId.",
};

/**
 * The service's own cheap check of a request's invariants (no I/O), for callers that skip the GraphQL edge
 * (tests, benchmarks, shadow traffic). The edge refuses bad input first.
 * @throws DomainError BAD_USER_INPUT when topK is outside [1, maxTopK], minScore outside [-1, 1], perGroup
 *   (with groupBy) outside [1, MAX_PER_GROUP], or not exactly one image source is set.
 */
export function assertSearchRequest(req: SearchRequest, maxTopK: number): void {
  if (!Number.isInteger(req.topK) || req.topK < 1 || req.topK > maxTopK)
    throw errors.badInput(requestRefusals.topK(maxTopK, req.topK));
  if (req.minScore !== undefined && req.minScore !== null && !(req.minScore >= -1 && req.minScore <= 1))
    throw errors.badInput(requestRefusals.minScore(req.minScore));
  const perGroup = req.perGroup ?? 3;
  if (req.groupBy && !(Number.isInteger(perGroup) && perGroup >= 1 && perGroup <= MAX_PER_GROUP))
    throw errors.badInput(requestRefusals.perGroup(MAX_PER_GROUP, perGroup));
  if (imageSourcesOf(req.image) !== 1) throw errors.badInput(requestRefusals.imageSources());
}
