/** Retrieval metrics over one ranked list, given which ranks are relevant. */

/** The figures reported per query, averaged per class and per dataset. */
export interface RetrievalMetrics {
  /** Precision at 1, 5 and 10: relevant hits among the first k, divided by k. */
  p1: number;
  p5: number;
  p10: number;
  /** Relevant hits among the first 10 divided by all relevant gallery items. */
  r10: number;
  /** Average precision over the ranking given (normalised by all relevant gallery items). */
  ap: number;
  /** 1 when the top-1 hit has the query's defect type (`good` = normal), else 0. */
  top1DefectType: number;
}

/** Names of the averaged figures, in table order. */
export const METRIC_KEYS = ["p1", "p5", "p10", "r10", "ap", "top1DefectType"] as const;

/**
 * Precision at `k`: relevant items among the first `k`, divided by `k` (missing ranks count as misses).
 * @param relevant - one flag per rank, best first.
 */
export function precisionAt(relevant: readonly boolean[], k: number): number {
  let hits = 0;
  for (let i = 0; i < k && i < relevant.length; i++) if (relevant[i]) hits++;
  return hits / k;
}

/**
 * Recall at `k`: relevant items among the first `k`, divided by `totalRelevant`.
 * @returns 0 when there is nothing relevant to find.
 */
export function recallAt(relevant: readonly boolean[], k: number, totalRelevant: number): number {
  if (totalRelevant === 0) return 0;
  let hits = 0;
  for (let i = 0; i < k && i < relevant.length; i++) if (relevant[i]) hits++;
  return hits / totalRelevant;
}

/**
 * Average precision: the mean of precision@rank over the ranks of relevant items, divided by
 * `totalRelevant`, so relevant items missing from a truncated ranking count as precision 0.
 * Equals the usual AP when the ranking covers the whole gallery.
 */
export function averagePrecision(relevant: readonly boolean[], totalRelevant: number): number {
  if (totalRelevant === 0) return 0;
  let hits = 0;
  let sum = 0;
  relevant.forEach((r, i) => {
    if (r) {
      hits++;
      sum += hits / (i + 1);
    }
  });
  return sum / totalRelevant;
}

/**
 * Every figure of one query.
 * @param relevant - relevance flag per rank (same product and defect type).
 * @param top1SameDefect - whether the first hit has the query's defect type; false when there is no hit.
 */
export function queryMetrics(
  relevant: readonly boolean[],
  totalRelevant: number,
  top1SameDefect: boolean,
): RetrievalMetrics {
  return {
    p1: precisionAt(relevant, 1),
    p5: precisionAt(relevant, 5),
    p10: precisionAt(relevant, 10),
    r10: recallAt(relevant, 10, totalRelevant),
    ap: averagePrecision(relevant, totalRelevant),
    top1DefectType: top1SameDefect ? 1 : 0,
  };
}

/** The mean of each figure over `rows`; all zero for no rows. */
export function meanMetrics(rows: readonly RetrievalMetrics[]): RetrievalMetrics {
  const out: RetrievalMetrics = { p1: 0, p5: 0, p10: 0, r10: 0, ap: 0, top1DefectType: 0 };
  if (rows.length === 0) return out;
  for (const r of rows) for (const k of METRIC_KEYS) out[k] += r[k];
  for (const k of METRIC_KEYS) out[k] /= rows.length;
  return out;
}
