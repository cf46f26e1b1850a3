/**
 * Multi-view embeddings: the whole image plus a grid of overlapping tiles cut from a larger resize, each
 * embedded by the model and pooled into one vector. A 224 x 224 view of the whole part shrinks a small
 * defect to a few pixels; a tile of a 448 x 448 resize shows it at twice the size. Pooling the views
 * (mean, or GeM) keeps one vector per image, so the index, the projection and the ranking do not change.
 * Tiling at test time as in Razavian et al., "Visual instance retrieval with deep convolutional networks"
 * (ITE 2016, multi-scale/region pooling); GeM from Radenović, Tolias & Chum (TPAMI 2018).
 */
import type { ViewSettings } from "../config/config.js";

/** Views per image: the whole image, plus grid x grid tiles when the grid is larger than 1. */
export function viewCount(views: ViewSettings): number {
  return views.grid > 1 ? 1 + views.grid * views.grid : 1;
}

/**
 * Top-left corners of the tiles along one side: `grid` tiles of `tile` pixels spread evenly over `size`
 * pixels, first at 0 and last flush with the far edge, so neighbours overlap by
 * `tile - (size - tile) / (grid - 1)` pixels.
 * @throws Error when the tiles cannot cover the side (`grid * tile < size`) or do not fit (`tile > size`).
 */
export function tileOrigins({ grid, size, tile }: { grid: number; size: number; tile: number }): number[] {
  if (grid < 2) return [];
  if (tile > size || grid * tile < size) {
    throw new Error(`${grid} tiles of ${tile} px cannot cover ${size} px without gaps`);
  }
  const stride = (size - tile) / (grid - 1);
  return Array.from({ length: grid }, (_, i) => Math.round(i * stride));
}

/** GeM exponent; 3 is the value Radenović et al. report as a good default for retrieval. */
const GEM_P = 3;

/**
 * Pools the unit view embeddings of one image into one L2-normalised vector.
 * `mean`: the average of the views. `gem`: per dimension `(mean(max(v, 0)^3))^(1/3)`, which leans towards
 * the view where a feature fires most (a small defect seen by one tile) without dropping the others.
 * @param vectors - `count` unit vectors of one length; the first is the whole image.
 * @returns a new unit vector, or null when the pool is all zero (an unusable embedding).
 */
export function poolViews(vectors: readonly Float32Array[], pool: ViewSettings["pool"]): Float32Array | null {
  const first = vectors[0];
  if (!first) return null;
  const dim = first.length;
  const out = new Float32Array(dim);
  for (const v of vectors) {
    for (let d = 0; d < dim; d++) {
      const x = v[d] as number;
      out[d] = (out[d] as number) + (pool === "gem" ? Math.max(x, 0) ** GEM_P : x);
    }
  }
  let norm = 0;
  for (let d = 0; d < dim; d++) {
    const m = (out[d] as number) / vectors.length;
    const x = pool === "gem" ? m ** (1 / GEM_P) : m;
    out[d] = x;
    norm += x * x;
  }
  norm = Math.sqrt(norm);
  if (!Number.isFinite(norm) || norm === 0) return null;
  for (let d = 0; d < dim; d++) out[d] = (out[d] as number) / norm;
  return out;
}
