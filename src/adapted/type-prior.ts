import { Matrix, solve } from "ml-matrix";
import { type PcaBasis, type ScatterMoments, scatterMoments } from "./projection.js";

/**
 * The type prior: a learned answer to "does this query show a defect at all?", used when one search ranks
 * defect and normal images together (`imageType: ALL`). On a gallery where most images are normal and the
 * defects are small (magnetic_tile: 71% normal), the nearest images of a small defect are mostly normal
 * ones of the same tile; the prior moves defect-index hits up and normal-index hits down by
 * `beta * t(query)`, or the other way, before the two lists are merged.
 *
 * `t(q) = tanh(s(q) / scale)` with `s` Fisher's linear discriminant of defect vs normal (Fisher 1936; with
 * a shrunk within-class covariance, Ledoit & Wolf 2004), fitted in a label-free PCA subspace of the
 * descriptor, and `scale` the standard deviation of `s` over the training images, so `t` is in (-1, 1)
 * whatever the descriptor's units. The descriptor is the embedding or the model's texture descriptor
 * (`src/embedding/texture.ts`), whichever cross-validation on the gallery prefers.
 */
export interface TypePrior {
  /** What `weights` apply to: the query's embedding, or its texture descriptor. */
  descriptor: "embedding" | "texture";
  /** Descriptor length. */
  inDim: number;
  /** Mean of the PCA basis (the cross-validation sample's descriptor mean), `inDim` values. */
  mean: Float32Array;
  /** Discriminant direction in descriptor space (the PCA folded in), `inDim` values. */
  weights: Float32Array;
  /** `s(q) = (q - mean) . weights + bias`; positive leans defect. */
  bias: number;
  /** Standard deviation of `s` over the training images. */
  scale: number;
  /** Largest score shift (cosine units) the prior applies to a hit. */
  beta: number;
}

/** A discriminant in a PCA subspace, before it is folded into descriptor space. */
export interface SubspaceDiscriminant {
  /** `dims` values: direction in the PCA coordinates. */
  w: Float64Array;
  bias: number;
  scale: number;
}

/**
 * Fits Fisher's discriminant of defect vs normal on PCA coordinates.
 * @param z - PCA coordinates of the training images (same length each).
 * @param isDefect - per row of `z`.
 * @param shrinkage - in [0, 1]: within-class covariance shrunk towards its mean variance times identity.
 * @returns null when either type has no image, or the scatter is degenerate (no finite direction).
 */
export function fitDiscriminant(
  z: readonly Float64Array[],
  isDefect: readonly boolean[],
  shrinkage: number,
): SubspaceDiscriminant | null {
  const dims = z[0]?.length ?? 0;
  return discriminantFromMoments(
    scatterMoments(
      z,
      isDefect.map((d) => (d ? 1 : 0)),
      dims,
      2,
    ),
    shrinkage,
  );
}

/**
 * {@link fitDiscriminant} from the rows' moments (class 1 defect, class 0 normal), so the folds of a
 * cross-validation share one pass over the rows: `Sw = (sum z z^T - n1 m1 m1^T - n0 m0 m0^T) / n`,
 * `w = Sw_shrunk^-1 (m1 - m0)` (ml-matrix LU solve), and the spread of `s` over the rows is
 * `sqrt(w^T (sum z z^T / n - mu mu^T) w)`.
 */
export function discriminantFromMoments(m: ScatterMoments, shrinkage: number): SubspaceDiscriminant | null {
  const { dims, count, sum, second } = m;
  const n0 = count[0] ?? 0;
  const n1 = count[1] ?? 0;
  const n = n0 + n1;
  if (n1 === 0 || n0 === 0 || dims === 0) return null;
  const m1 = Float64Array.from({ length: dims }, (_, d) => (sum[dims + d] as number) / n1);
  const m0 = Float64Array.from({ length: dims }, (_, d) => (sum[d] as number) / n0);
  const sw = new Matrix(dims, dims);
  for (let a = 0; a < dims; a++)
    for (let b = 0; b < dims; b++)
      sw.set(
        a,
        b,
        ((second[a * dims + b] as number) -
          n1 * (m1[a] as number) * (m1[b] as number) -
          n0 * (m0[a] as number) * (m0[b] as number)) /
          n,
      );
  let trace = 0;
  for (let a = 0; a < dims; a++) trace += sw.get(a, a);
  const ridge = (shrinkage * trace) / dims;
  sw.mul(1 - shrinkage);
  for (let a = 0; a < dims; a++) sw.set(a, a, sw.get(a, a) + ridge);
  const diff = Matrix.columnVector(Array.from(m1, (v, d) => v - (m0[d] as number)));
  let w: Float64Array;
  try {
    w = Float64Array.from(solve(sw, diff).getColumn(0));
  } catch {
    return null; // singular scatter (no shrinkage, too few distinct rows)
  }
  let mid = 0;
  for (let d = 0; d < dims; d++) mid += (w[d] as number) * (((m1[d] as number) + (m0[d] as number)) / 2);
  const bias = -mid;
  // Variance of s over the rows: w^T (second / n - mu mu^T) w.
  const mu = Float64Array.from(
    { length: dims },
    (_, d) => (n1 * (m1[d] as number) + n0 * (m0[d] as number)) / n,
  );
  let wmu = 0;
  for (let d = 0; d < dims; d++) wmu += (w[d] as number) * (mu[d] as number);
  let quad = 0;
  for (let a = 0; a < dims; a++) {
    let s = 0;
    for (let b = 0; b < dims; b++) s += (second[a * dims + b] as number) * (w[b] as number);
    quad += (w[a] as number) * s;
  }
  const variance = quad / n - wmu * wmu;
  const scale = Math.sqrt(Math.max(variance, 1e-12));
  // A degenerate scatter (identical rows, a singular matrix) gives no usable direction.
  if (!Number.isFinite(bias) || !Number.isFinite(scale) || !w.every(Number.isFinite)) return null;
  if (w.every((x) => x === 0) || variance <= 1e-12) return null;
  return { w, bias, scale };
}

/** `tanh(s / scale)` of PCA coordinates under a subspace discriminant. */
export function subspaceLean(d: SubspaceDiscriminant, z: Float64Array): number {
  let s = d.bias;
  for (let k = 0; k < d.w.length; k++) s += (d.w[k] as number) * (z[k] as number);
  return Math.tanh(s / d.scale);
}

/** Folds the PCA basis into a discriminant: weights in descriptor space, for one dot product per query. */
export function foldTypePrior(
  basis: PcaBasis,
  d: SubspaceDiscriminant,
  descriptor: TypePrior["descriptor"],
  beta: number,
): TypePrior {
  const weights = new Float32Array(basis.inDim);
  for (let k = 0; k < basis.dims; k++) {
    const wk = d.w[k] as number;
    const off = k * basis.inDim;
    for (let j = 0; j < basis.inDim; j++)
      weights[j] = (weights[j] as number) + wk * (basis.components[off + j] as number);
  }
  return {
    descriptor,
    inDim: basis.inDim,
    mean: Float32Array.from(basis.mean),
    weights,
    bias: d.bias,
    scale: d.scale,
    beta,
  };
}

/**
 * How much the query leans towards defect: `tanh(s(q) / scale)`, in (-1, 1).
 * @param descriptor - the query's embedding or texture descriptor (as `prior.descriptor` says), `inDim` values.
 * @throws Error when the descriptor's length is not `prior.inDim`.
 */
export function typeLean(prior: TypePrior, descriptor: Float32Array): number {
  if (descriptor.length !== prior.inDim)
    throw new Error(`type prior expects ${prior.inDim} values, got ${descriptor.length}`);
  let s = prior.bias;
  for (let j = 0; j < prior.inDim; j++)
    s += ((descriptor[j] as number) - (prior.mean[j] as number)) * (prior.weights[j] as number);
  return Math.tanh(s / prior.scale);
}

/**
 * Shift of a hit's ranking score under the prior: `+beta * lean` for a defect image, `-beta * lean` for a
 * normal one (the reported score stays the similarity).
 */
export function typeShift(prior: Pick<TypePrior, "beta">, lean: number, hitIsDefect: boolean): number {
  return (hitIsDefect ? 1 : -1) * prior.beta * lean;
}
