/**
 * k-reciprocal re-ranking (Zhong, Zheng, Cao & Li, "Re-ranking Person Re-identification with k-reciprocal
 * Encoding", CVPR 2017), split so that everything about the gallery alone is computed once (at rebuild
 * time) and a query only adds its own neighbour set and one Jaccard distance per top-N candidate.
 *
 * Distances are `2 - 2 cos` (squared Euclidean between unit vectors), as in the paper's code.
 */

/** The gallery-only part: neighbour lists, k-reciprocal sets and their encodings. */
export interface KReciprocalGallery {
  k1: number;
  k2: number;
  /** Per gallery row, its k1 + 1 nearest rows (itself first), best first. */
  neighbours: Int32Array[];
  /** Per gallery row, the similarity of its k1-th neighbour: a query closer than this is in its top k1. */
  kthScore: Float64Array;
  /** Per gallery row, its k-reciprocal set with half k1 (for the expansion step). */
  halfSets: Int32Array[];
  /** Per gallery row, its encoding V (sparse: row -> weight, weights summing to 1), after expansion by k2. */
  encodings: Map<number, number>[];
}

const distance = (score: number) => Math.max(0, 2 - 2 * score);

function topRows(scores: Float64Array, count: number): Int32Array {
  const order = Array.from(scores.keys()).sort(
    (a, b) => (scores[b] as number) - (scores[a] as number) || a - b,
  );
  return Int32Array.from(order.slice(0, count));
}

/** Rows of `scores`' top k that also have `self` among their own top k (`self` < 0: the query). */
function reciprocal(top: Int32Array, k: number, inTopOf: (row: number, k: number) => boolean): number[] {
  return Array.from(top.subarray(0, k + 1)).filter((r) => inTopOf(r, k));
}

/** The paper's expansion: add a candidate's half-k1 set when two thirds of it is already in the set. */
function expand(base: number[], halfSets: readonly Int32Array[]): Set<number> {
  const set = new Set(base);
  for (const c of base) {
    const half = halfSets[c] as Int32Array;
    let shared = 0;
    for (const r of half) if (set.has(r) || base.includes(r)) shared++;
    if (shared > (2 / 3) * half.length) for (const r of half) set.add(r);
  }
  return set;
}

function encode(members: Iterable<number>, scoreOf: (row: number) => number): Map<number, number> {
  const v = new Map<number, number>();
  let sum = 0;
  for (const r of members) {
    const w = Math.exp(-distance(scoreOf(r)));
    v.set(r, w);
    sum += w;
  }
  for (const [r, w] of v) v.set(r, w / sum);
  return v;
}

/** Local query expansion: the mean of the encodings of `rows`. */
function average(rows: readonly number[], encodings: readonly Map<number, number>[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const r of rows)
    for (const [g, w] of encodings[r] as Map<number, number>) out.set(g, (out.get(g) ?? 0) + w / rows.length);
  return out;
}

/**
 * Precomputes the gallery side.
 * @param galleryScores - per gallery row, its similarity to every gallery row (itself included).
 * @param k1 - neighbourhood of the k-reciprocal sets (paper: 20).
 * @param k2 - neighbours averaged in the local query expansion (paper: 6).
 */
export function prepareKReciprocal({
  galleryScores,
  k1,
  k2,
}: {
  galleryScores: readonly Float64Array[];
  k1: number;
  k2: number;
}): KReciprocalGallery {
  const n = galleryScores.length;
  const neighbours = galleryScores.map((s) => topRows(s, Math.min(n, k1 + 1)));
  const rank = neighbours.map((nb) => new Map(Array.from(nb, (r, i) => [r, i])));
  const inTop = (row: number, self: number, k: number) =>
    ((rank[row] as Map<number, number>).get(self) ?? k + 1) <= k;
  const kthScore = Float64Array.from(neighbours, (nb, i) => {
    const last = nb[Math.min(nb.length - 1, k1)] as number;
    return (galleryScores[i] as Float64Array)[last] as number;
  });
  const half = Math.max(1, Math.round(k1 / 2));
  const halfSets = neighbours.map((nb, i) => Int32Array.from(reciprocal(nb, half, (r, k) => inTop(r, i, k))));
  const sets = neighbours.map((nb, i) =>
    expand(
      reciprocal(nb, k1, (r, k) => inTop(r, i, k)),
      halfSets,
    ),
  );
  const raw = sets.map((set, i) => encode(set, (r) => (galleryScores[i] as Float64Array)[r] as number));
  const encodings = neighbours.map((nb) => average(Array.from(nb.subarray(0, k2)), raw));
  return { k1, k2, neighbours, kthScore, halfSets, encodings };
}

/**
 * Re-ranks one query's top-N candidates by `(1 - lambda) * Jaccard + lambda * original distance`.
 * @param queryScores - the query's similarity to every gallery row.
 * @param topN - candidates re-ranked; the rest keep their order after them.
 * @param lambda - weight of the original distance (paper: 0.3).
 * @returns gallery rows, best first.
 */
export function rerankKReciprocal(
  gallery: KReciprocalGallery,
  queryScores: Float64Array,
  { topN, lambda }: { topN: number; lambda: number },
): number[] {
  const order = Array.from(queryScores.keys()).sort(
    (a, b) => (queryScores[b] as number) - (queryScores[a] as number) || a - b,
  );
  const { k1, k2 } = gallery;
  // The query is in row r's top k1 when it is closer than r's k1-th neighbour.
  const base = order
    .slice(0, k1)
    .filter((r) => (queryScores[r] as number) >= (gallery.kthScore[r] as number));
  const set = expand(base, gallery.halfSets);
  const own = encode(set, (r) => queryScores[r] as number);
  // Query expansion: the query's encoding with those of its k2 - 1 nearest gallery rows.
  const expanded = new Map<number, number>();
  const peers = order.slice(0, Math.max(0, k2 - 1));
  for (const [g, w] of own) expanded.set(g, w / (peers.length + 1));
  for (const r of peers)
    for (const [g, w] of gallery.encodings[r] as Map<number, number>)
      expanded.set(g, (expanded.get(g) ?? 0) + w / (peers.length + 1));
  const head = order.slice(0, topN).map((r) => {
    const v = gallery.encodings[r] as Map<number, number>;
    let min = 0;
    let max = 0;
    for (const [g, w] of expanded) {
      const x = v.get(g) ?? 0;
      min += Math.min(w, x);
    }
    let sumQ = 0;
    let sumG = 0;
    for (const w of expanded.values()) sumQ += w;
    for (const w of v.values()) sumG += w;
    max = sumQ + sumG - min;
    const jaccard = max > 0 ? 1 - min / max : 1;
    return { r, d: (1 - lambda) * jaccard + lambda * distance(queryScores[r] as number) };
  });
  head.sort((a, b) => a.d - b.d || a.r - b.r);
  return [...head.map((h) => h.r), ...order.slice(topN)];
}
