import type { LoadedImage } from "./dataset.js";
import { queryMetrics, type RetrievalMetrics } from "./metrics.js";

/** One query's ranked answer, as gallery content hashes, best first. */
export interface RankedQuery {
  query: LoadedImage;
  /** Content hashes of the hits, best first, each at most once. */
  ranking: string[];
  scores: number[];
}

/**
 * Exact cosine ranking by brute force: the reference the service is compared with.
 * @param gallery - row-major L2-normalised vectors, `count` x `dimension`.
 * @param limit - ranks kept.
 * @returns gallery row numbers and scores, best first.
 */
export function exactRanking(
  gallery: Float32Array,
  dimension: number,
  query: Float32Array,
  limit: number,
): { rows: number[]; scores: number[] } {
  const count = gallery.length / dimension;
  const scores = new Float64Array(count);
  for (let r = 0; r < count; r++) {
    let s = 0;
    const off = r * dimension;
    for (let d = 0; d < dimension; d++) s += (gallery[off + d] as number) * (query[d] as number);
    scores[r] = s;
  }
  const rows = Array.from({ length: count }, (_, i) => i);
  rows.sort((a, b) => (scores[b] as number) - (scores[a] as number) || a - b);
  const kept = rows.slice(0, limit);
  return { rows: kept, scores: kept.map((r) => scores[r] as number) };
}

/** Per-query metrics of a ranked query against the gallery's labels. */
export interface ScoredQuery {
  relPath: string;
  label: string;
  metrics: RetrievalMetrics;
  /** First 10 hashes, for comparing two runs. */
  top10: string[];
}

/**
 * Scores rankings: a hit is relevant when its product and defect type equal the query's.
 * @param gallery - the deduplicated gallery (hash -> label, and relevant counts per label).
 */
export function scoreRankings(
  gallery: readonly LoadedImage[],
  ranked: readonly RankedQuery[],
): ScoredQuery[] {
  const labelByHash = new Map(gallery.map((g) => [g.sha256, g]));
  const countByLabel = new Map<string, number>();
  for (const g of gallery) countByLabel.set(g.label, (countByLabel.get(g.label) ?? 0) + 1);
  return ranked.map(({ query, ranking }) => {
    const hits = ranking.map((h) => labelByHash.get(h));
    const relevant = hits.map((h) => h?.label === query.label);
    const top = hits[0];
    return {
      relPath: query.relPath,
      label: query.label,
      metrics: queryMetrics(
        relevant,
        countByLabel.get(query.label) ?? 0,
        top !== undefined && (top.defectCode ?? "good") === (query.defectCode ?? "good"),
      ),
      top10: ranking.slice(0, 10),
    };
  });
}
