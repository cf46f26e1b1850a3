import { l2NormalizeInPlace } from "../embedding/embedding.model.js";
import type { MergedMatches } from "../matchers/matcher.js";
import { classKey, voteShares } from "./defect-suggestion.js";
import type { HitGroup, SearchHit } from "./search-result.js";

// The merge of both image types runs in the matcher (one index call per query vector); re-exported here,
// where the other ranking steps are.
export { mergeByType } from "../matchers/merge-by-type.js";

/** alpha-QE settings: hits the query is expanded with (0 = off) and their weight exponent. */
export interface QueryExpansion {
  topN: number;
  alpha: number;
}

/**
 * alpha-QE (Radenović, Tolias & Chum, "Fine-tuning CNN image retrieval with no human annotation", TPAMI
 * 2018, §3.4): `normalise(q + sum_i max(s_i, 0)^alpha x_i)` over the query's top hits.
 * @param query - L2-normalised embedding.
 * @param neighbours - the top hits' L2-normalised embeddings (same length as `query`) and similarities.
 * @returns a new L2-normalised `Float32Array`; the query itself when every weight is zero.
 */
export function expandQuery(
  query: Float32Array,
  neighbours: readonly { vector: Float32Array; score: number }[],
  alpha: number,
): Float32Array {
  const out = Float32Array.from(query);
  for (const { vector, score } of neighbours) {
    const w = Math.max(score, 0) ** alpha;
    for (let d = 0; d < out.length; d++) out[d] = (out[d] as number) + w * (vector[d] as number);
  }
  return l2NormalizeInPlace(out) ? out : Float32Array.from(query);
}

/**
 * The ranking after alpha-QE: the first ranking's top `expansion.topN` hits' stored embeddings pull the
 * query towards their neighbourhood, and the expanded query is ranked again.
 * @param stored - the stored embeddings of gallery image ids (those without one are skipped).
 * @param rankWith - ranks one query vector (the index call).
 * @returns `first` itself when none of its top hits has a stored embedding.
 */
export async function expandedRanking({
  first,
  embedding,
  expansion,
  stored,
  rankWith,
}: {
  first: MergedMatches;
  embedding: Float32Array;
  expansion: QueryExpansion;
  stored: (imageIds: number[]) => Promise<Map<number, Float32Array>>;
  rankWith: (vector: Float32Array) => Promise<MergedMatches>;
}): Promise<MergedMatches> {
  const top = first.matches.slice(0, expansion.topN);
  const vectors = await stored(top.flatMap((m) => (m.entry.imageId === null ? [] : [m.entry.imageId])));
  const neighbours = top.flatMap((m) => {
    const v = m.entry.imageId === null ? undefined : vectors.get(m.entry.imageId);
    return v ? [{ vector: v, score: m.score }] : [];
  });
  return neighbours.length > 0 ? rankWith(expandQuery(embedding, neighbours, expansion.alpha)) : first;
}

/**
 * Hits grouped by (product, defect type), as Qdrant's `query_points_groups` groups points: each group holds
 * its best `perGroup` hits in rank order; groups are ordered by their share of the suggestion's vote
 * ({@link voteShares} over the first `voteTopK` hits), then by their best hit's rank.
 */
export function groupByDefectType(
  ranked: readonly SearchHit[],
  perGroup: number,
  voteTopK: number,
): HitGroup[] {
  const shares = voteShares(ranked, voteTopK);
  const groups = new Map<string, HitGroup & { best: number }>();
  for (const hit of ranked) {
    const key = classKey(hit);
    let g = groups.get(key);
    if (!g) {
      g = {
        productCode: hit.productCode,
        defectCode: hit.defectCode,
        defectName: hit.defectName,
        share: shares.get(key) ?? 0,
        hits: [],
        best: hit.rank,
      };
      groups.set(key, g);
    }
    if (g.hits.length < perGroup) g.hits.push(hit);
  }
  return [...groups.values()]
    .sort((a, b) => b.share - a.share || a.best - b.best)
    .map(({ best: _best, ...g }) => g);
}
