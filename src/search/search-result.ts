import type { GalleryEntry } from "../index/gallery-entry.js";
import type { EmbeddingSpace } from "../matchers/matcher.js";
import type { ImageType, MatcherVersion } from "../shared/types.js";
import type { DefectSuggestion } from "./defect-suggestion.js";
import type { SearchRequest } from "./search-request.js";

/** Hits of one (product, defect type), as `groupBy: defectType` answers them. */
export interface HitGroup {
  productCode: string;
  /** Null for normal images. */
  defectCode: string | null;
  defectName: string | null;
  /** The class's share of the suggestion's vote (0 when none of the voting hits has it). */
  share: number;
  /** Its best `perGroup` hits, with their ranks in the whole ranking. */
  hits: SearchHit[];
}

/** One ranked result with everything the gallery knows about the image. */
export interface SearchHit extends GalleryEntry {
  /** 1-based. */
  rank: number;
  /** Cosine similarity of the query and gallery embeddings, in [-1, 1]. */
  score: number;
  /** The space that ranked this hit. */
  space: EmbeddingSpace;
}

/** Time spent per stage of one search (ms). */
export interface SearchTiming {
  fetchMs: number;
  decodeMs: number;
  inferenceMs: number;
  searchMs: number;
  totalMs: number;
}

/** The answer to one search. */
export interface SearchResult {
  version: MatcherVersion;
  imageType: ImageType | "all";
  /** The embedding model that ranked it (the query's embedding and every index searched are of it). */
  modelId: string;
  indexSize: number;
  hits: SearchHit[];
  /** The space the hits were ranked in. */
  space: EmbeddingSpace;
  /** Likely defect type by a weighted vote of the top SUGGESTION_TOP_K hits (filters apply); null without hits. */
  suggestion: DefectSuggestion | null;
  /** With `groupBy`: the hits by (product, defect type), the largest vote share first; else null. */
  groups: HitGroup[] | null;
  timing: SearchTiming;
}

/** A search's answer with its whole ranking (at least the suggestion's voters), for shadow traffic. */
export interface RankedSearch {
  result: SearchResult;
  /** The ranking the hits were cut from: at least max(topK, SUGGESTION_TOP_K) hits when there are as many. */
  ranking: SearchHit[];
}

/** Told of every answered search (shadow traffic); must return at once. */
export type SearchObserver = (req: SearchRequest, answered: RankedSearch) => void;
