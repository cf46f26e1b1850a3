import type { SearchHits } from "./vector-index.js";

/**
 * How one search is run, given how much of the gallery a filter lets through:
 * - `ann`: one approximate search for `k` candidates, then the filter on them (no filter, or a filter
 *   that keeps a large share, where `k` = topK over that share, with a margin);
 * - `subset`: one exact search over just the matching labels (a selective filter, where the ANN would
 *   have to return most of the gallery to find topK matches).
 */
export type SearchPlan = { kind: "ann"; k: number } | { kind: "subset"; ids: Int32Array };

/** Tuning of {@link planSearch}. */
export interface PlanLimits {
  /** A filter matching at most this many labels is searched exactly over the subset. */
  subsetMaxLabels: number;
  /** ... or at most this share of the gallery (0-1). */
  subsetMaxShare: number;
  /** Candidates asked of the ANN per expected match: covers the filter's unevenness around the query. */
  oversample: number;
  /** Extra candidates for labels dropped after the search (the query image itself in find-similar). */
  extra: number;
}

/** Defaults: exact subset search costs about 1 ms per 1000 labels here (1280-d); see docs/benchmarks.md. */
export const DEFAULT_PLAN_LIMITS: PlanLimits = {
  subsetMaxLabels: 20_000,
  subsetMaxShare: 0.02,
  oversample: 2,
  extra: 8,
};

/**
 * Chooses how to search.
 * @param count - labels in the index.
 * @param matching - labels passing the filter, or null when there is no filter.
 * @param topK - hits wanted (>= 1).
 */
export function planSearch(
  count: number,
  matching: Int32Array | null,
  topK: number,
  limits: PlanLimits = DEFAULT_PLAN_LIMITS,
): SearchPlan {
  const wanted = topK + limits.extra;
  if (matching === null) return { kind: "ann", k: Math.min(count, wanted) };
  if (matching.length === 0) return { kind: "subset", ids: matching };
  if (matching.length <= limits.subsetMaxLabels || matching.length <= limits.subsetMaxShare * count)
    return { kind: "subset", ids: matching };
  const share = matching.length / count;
  return { kind: "ann", k: Math.min(count, Math.ceil((wanted / share) * limits.oversample)) };
}

/** One kept result. */
export interface RankedLabel {
  label: number;
  /** Cosine similarity. */
  score: number;
}

/**
 * The first `topK` results that `keep` accepts, stopping at the first score below `minScore`.
 * @returns hits, and whether the list was cut by `minScore` (then asking for more cannot help).
 */
export function takeHits(
  hits: SearchHits,
  topK: number,
  keep: (label: number) => boolean,
  minScore?: number,
): { hits: RankedLabel[]; cutByMinScore: boolean } {
  const out: RankedLabel[] = [];
  for (let i = 0; i < hits.labels.length && out.length < topK; i++) {
    const score = hits.scores[i] as number;
    if (minScore !== undefined && score < minScore) return { hits: out, cutByMinScore: true };
    const label = hits.labels[i] as number;
    if (keep(label)) out.push({ label, score });
  }
  return { hits: out, cutByMinScore: false };
}

/** A sorted-labels membership test (binary search), for post-filtering ANN candidates. */
export function sortedContains(sorted: Int32Array, label: number): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = sorted[mid] as number;
    if (v === label) return true;
    if (v < label) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** What {@link filteredSearch} needs of an index. */
export interface SearchableIndex {
  readonly count: number;
  search(query: Float32Array, k: number): Promise<SearchHits>;
  searchSubset(query: Float32Array, k: number, ids: Int32Array): Promise<SearchHits>;
}

/**
 * Top `topK` labels passing the filter, by one search (see {@link planSearch}). When an `ann` plan's
 * candidates hold fewer than topK matches (an unlucky neighbourhood), one exact subset search over the
 * matching labels completes it, so the answer always holds min(topK, matches) hits.
 * @param matching - labels passing the filter, ascending, or null when there is no filter.
 * @param drop - labels to leave out after the search (e.g. the query image itself).
 */
export async function filteredSearch(
  index: SearchableIndex,
  query: Float32Array,
  {
    topK,
    matching,
    drop = () => false,
    minScore,
    limits = DEFAULT_PLAN_LIMITS,
  }: {
    topK: number;
    matching: Int32Array | null;
    drop?: (label: number) => boolean;
    minScore?: number | undefined;
    limits?: PlanLimits;
  },
): Promise<{ hits: RankedLabel[]; plan: SearchPlan["kind"]; passes: number }> {
  const plan = planSearch(index.count, matching, topK, limits);
  if (plan.kind === "subset") {
    const found = await index.searchSubset(query, Math.min(plan.ids.length, topK + limits.extra), plan.ids);
    return { hits: takeHits(found, topK, (l) => !drop(l), minScore).hits, plan: "subset", passes: 1 };
  }
  const keep = (l: number) => !drop(l) && (matching === null || sortedContains(matching, l));
  const found = await index.search(query, plan.k);
  const first = takeHits(found, topK, keep, minScore);
  const available = matching === null ? index.count : matching.length;
  if (
    first.hits.length >= topK ||
    first.cutByMinScore ||
    plan.k >= index.count ||
    first.hits.length >= available
  )
    return { hits: first.hits, plan: "ann", passes: 1 };
  const ids = matching ?? Int32Array.from({ length: index.count }, (_, i) => i);
  const exact = await index.searchSubset(query, Math.min(ids.length, topK + limits.extra), ids);
  return { hits: takeHits(exact, topK, (l) => !drop(l), minScore).hits, plan: "ann", passes: 2 };
}
