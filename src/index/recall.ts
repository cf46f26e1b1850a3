/**
 * Recall self-check of an approximate index: gallery vectors are used as queries, each left out of both
 * its exact and its approximate result list (a vector that is in the index finds itself, which would
 * flatter recall). recall@10 is the mean share of the exact top-10 that the index returns in its top-10
 * (the usual definition in ANN benchmarks, e.g. Aumüller et al., "ANN-Benchmarks", 2020).
 */

/** Results compared: 10 neighbours, searched with one extra slot for the query itself. */
export const RECALL_K = 10;
/** Neighbours fetched per query: {@link RECALL_K} plus the query's own label. */
export const RECALL_FETCH_K = RECALL_K + 1;

/**
 * Distinct labels in [0, count), spread over the gallery: a seeded stride walk, so the same gallery and
 * seed give the same sample.
 * @param size - sample size wanted; fewer when the gallery is smaller.
 */
export function recallSample(count: number, size: number, seed: number): Int32Array {
  const n = Math.max(0, Math.min(size, count));
  const out = new Int32Array(n);
  if (n === 0) return out;
  const step = count / n;
  // Offset inside the first stride, from the seed (xorshift step), so samples differ per seed.
  let s = seed >>> 0 || 1;
  s ^= s << 13;
  s ^= s >>> 17;
  s ^= s << 5;
  const offset = ((s >>> 0) % 1000) / 1000;
  for (let i = 0; i < n; i++) out[i] = Math.min(count - 1, Math.floor((i + offset) * step));
  return out;
}

/** The first `k` labels of row `q` other than `self` and padding (-1). */
function rowWithoutSelf(labels: Int32Array, rowK: number, q: number, self: number, k: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < rowK && out.length < k; j++) {
    const l = labels[q * rowK + j] as number;
    if (l >= 0 && l !== self) out.push(l);
  }
  return out;
}

/**
 * recall@10 of approximate results against exact ones, each row's own label left out.
 * @param selfLabels - the label of each query vector (its row in the gallery).
 * @param exact - exact labels, `selfLabels.length` rows of `exactK`, best first.
 * @param approx - the index's labels, rows of `approxK`, best first.
 * @returns mean recall in [0, 1]; 1 when no query has a neighbour (gallery of one).
 */
export function recallAt10(
  selfLabels: Int32Array,
  exact: Int32Array,
  exactK: number,
  approx: Int32Array,
  approxK: number,
): number {
  let sum = 0;
  let rows = 0;
  selfLabels.forEach((self, q) => {
    const truth = rowWithoutSelf(exact, exactK, q, self, RECALL_K);
    if (truth.length === 0) return;
    const found = new Set(rowWithoutSelf(approx, approxK, q, self, RECALL_K));
    let hit = 0;
    for (const l of truth) if (found.has(l)) hit++;
    sum += hit / truth.length;
    rows++;
  });
  return rows === 0 ? 1 : sum / rows;
}

/**
 * Merges a block's top-k into running top-k lists (higher score first when `higherIsBetter`), for
 * exact search over a gallery in blocks.
 * @param labelOffset - added to the block's labels (its first row in the gallery).
 */
export function mergeTopK(
  acc: { labels: Int32Array; distances: Float32Array },
  block: { labels: Int32Array; distances: Float32Array },
  k: number,
  labelOffset: number,
  higherIsBetter: boolean,
): void {
  const nq = acc.labels.length / k;
  const better = (a: number, b: number) => (higherIsBetter ? a > b : a < b);
  const rowL = new Int32Array(k);
  const rowD = new Float32Array(k);
  for (let q = 0; q < nq; q++) {
    let i = 0;
    let j = 0;
    for (let o = 0; o < k; o++) {
      const ai = q * k + i;
      const bj = q * k + j;
      const aValid = i < k && (acc.labels[ai] as number) >= 0;
      const bValid = j < k && (block.labels[bj] as number) >= 0;
      if (aValid && (!bValid || !better(block.distances[bj] as number, acc.distances[ai] as number))) {
        rowL[o] = acc.labels[ai] as number;
        rowD[o] = acc.distances[ai] as number;
        i++;
      } else if (bValid) {
        rowL[o] = (block.labels[bj] as number) + labelOffset;
        rowD[o] = block.distances[bj] as number;
        j++;
      } else {
        rowL[o] = -1;
        rowD[o] = higherIsBetter ? -Infinity : Infinity;
      }
    }
    acc.labels.set(rowL, q * k);
    acc.distances.set(rowD, q * k);
  }
}
