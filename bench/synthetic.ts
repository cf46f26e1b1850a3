/** Synthetic embeddings for the search-only benchmarks: clustered, L2-normalised, reproducible. */

/** A seeded uniform generator in [0, 1) (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u = rand() || 1e-12;
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

function normalizeRows(data: Float32Array, dimension: number): void {
  for (let off = 0; off < data.length; off += dimension) {
    let s = 0;
    for (let d = 0; d < dimension; d++) s += (data[off + d] as number) ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let d = 0; d < dimension; d++) data[off + d] = (data[off + d] as number) * inv;
  }
}

/** Points scattered around fixed random centres, like embeddings of images of a few hundred kinds. */
export interface ClusterSpace {
  dimension: number;
  clusters: number;
  /** `count` new L2-normalised points, row-major; the same seed gives the same points. */
  sample(count: number, seed: number): Float32Array;
}

/**
 * A space of `clusters` random unit centres; each sample is a centre plus isotropic Gaussian noise of
 * norm about `spread` (relative to the unit centre), normalised. With spread 0.8 a point's cosine
 * similarity to its centre is about 0.78, to a point of the same cluster about 0.6, to others about 0.
 */
export function clusterSpace({
  dimension,
  clusters,
  spread = 0.8,
  seed = 42,
}: {
  dimension: number;
  clusters: number;
  spread?: number;
  seed?: number;
}): ClusterSpace {
  const g = gaussian(seededRandom(seed));
  const centres = new Float32Array(clusters * dimension);
  for (let i = 0; i < centres.length; i++) centres[i] = g();
  normalizeRows(centres, dimension);
  const noise = spread / Math.sqrt(dimension);
  return {
    dimension,
    clusters,
    sample(count, sampleSeed) {
      const rand = seededRandom(sampleSeed);
      const n = gaussian(rand);
      const out = new Float32Array(count * dimension);
      for (let i = 0; i < count; i++) {
        const c = Math.floor(rand() * clusters) * dimension;
        const off = i * dimension;
        for (let d = 0; d < dimension; d++) out[off + d] = (centres[c + d] as number) + noise * n();
      }
      normalizeRows(out, dimension);
      return out;
    },
  };
}
