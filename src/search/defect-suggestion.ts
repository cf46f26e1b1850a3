/** One voter: a ranked hit's labels and similarity score. */
export interface Voter {
  productCode: string;
  /** Null for normal images. */
  defectCode: string | null;
  defectName: string | null;
  score: number;
}

/** The likely defect type of a query image, from its nearest gallery images. */
export interface DefectSuggestion {
  productCode: string;
  /** Null when the vote says normal. */
  defectCode: string | null;
  defectName: string | null;
  /** Share of the vote's weight, in (0, 1]. */
  share: number;
  /** Hits that voted. */
  votes: number;
}

/**
 * Similarity-weighted k-nearest-neighbour vote (Dudani, IEEE SMC 1976): each of the first `k` hits
 * votes for its (product, defect type) with weight max(score, 0) + 1e-6, so ties in score fall back to a
 * plain count; the heaviest class wins, ties broken by the better-ranked hit.
 * @returns null when there are no hits.
 */
export function suggestDefectType(hits: readonly Voter[], k: number): DefectSuggestion | null {
  const voters = hits.slice(0, k);
  if (voters.length === 0) return null;
  const tally = new Map<string, { voter: Voter; weight: number; first: number }>();
  let total = 0;
  voters.forEach((h, i) => {
    const weight = Math.max(h.score, 0) + 1e-6;
    total += weight;
    const key = classKey(h);
    const t = tally.get(key);
    if (t) t.weight += weight;
    else tally.set(key, { voter: h, weight, first: i });
  });
  const best = [...tally.values()].sort((a, b) => b.weight - a.weight || a.first - b.first)[0];
  if (!best) return null;
  return {
    productCode: best.voter.productCode,
    defectCode: best.voter.defectCode,
    defectName: best.voter.defectName,
    share: best.weight / total,
    votes: voters.length,
  };
}

/** Key of a voter's class: product and defect type. */
export const classKey = (v: { productCode: string; defectCode: string | null }) =>
  `${v.productCode}\u0000${v.defectCode ?? ""}`;

/**
 * Each class's share of the vote of {@link suggestDefectType} (the same weights over the first `k` hits),
 * by {@link classKey}; classes without a vote are absent.
 */
export function voteShares(hits: readonly Voter[], k: number): Map<string, number> {
  const voters = hits.slice(0, k);
  const weights = new Map<string, number>();
  let total = 0;
  for (const h of voters) {
    const w = Math.max(h.score, 0) + 1e-6;
    total += w;
    weights.set(classKey(h), (weights.get(classKey(h)) ?? 0) + w);
  }
  return new Map([...weights].map(([key, w]) => [key, w / total]));
}
