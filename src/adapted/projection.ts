import { EigenvalueDecomposition, Matrix } from "ml-matrix";
import type { TypePrior } from "./type-prior.js";

/**
 * A supervised linear map of the raw embedding, learned from the labelled gallery.
 *
 * `y = normalise(W (x - mean))` with `W` (outDim x inDim) the composition of a PCA to `pcaDims` dimensions
 * (fitted without labels) and a discriminative whitening: the inverse square root of the shrunk
 * within-class covariance, rotated onto the principal axes of the between-class covariance (learned
 * whitening, Radenović, Tolias & Chum, "Fine-tuning CNN image retrieval with no human annotation", TPAMI
 * 2018, §3.3; with mean-centring as in SimpleShot, Wang et al. 2019). The searched vector is the blend
 * `[sqrt(1-blend) x, sqrt(blend) y]`, so an inner product is `(1-blend) cos_raw + blend cos_adapted`:
 * one comparable cosine-like score per index, raw included.
 */
export interface Projection {
  inDim: number;
  /** Dimension of `y`; the indexed vector has `inDim + outDim` values. */
  outDim: number;
  /** Gallery mean, `inDim` values. */
  mean: Float32Array;
  /** `outDim` x `inDim`, row-major. */
  matrix: Float32Array;
  /** Weight of the adapted cosine in the score, in (0, 1]. */
  blend: number;
  /** Shrinkage of the within-class covariance towards a scaled identity, in [0, 1]. */
  shrinkage: number;
  /** Indexes searched in this space: `all`, or `defect` only (the normal index stays raw). */
  scope: "all" | "defect";
  /** Learned defect-vs-normal lean for searches of both image types; absent when the gate chose none. */
  typePrior?: TypePrior | undefined;
}

/** Hyper-parameters of one fit. */
export interface FitParams {
  /** Shrinkage towards the identity (0 = plain within-class whitening). */
  shrinkage: number;
  /** Weight of the adapted cosine in the blended score. */
  blend: number;
  /**
   * Between-class axes kept (largest first); default classes - 1, the rank of the between-class
   * covariance (Fisher's LDA keeps no more).
   */
  axes?: number;
  /**
   * Which indexes search in the adapted space: `all`, or only `defect` (normal images keep the raw
   * cosine; the projection still learns from them, so defect scores stay comparable).
   */
  scope?: "all" | "defect";
}

/** A label-free principal subspace of a gallery: shared by every fit of one cross-validation. */
export interface PcaBasis {
  inDim: number;
  mean: Float64Array;
  /** `dims` x `inDim`, row-major, orthonormal rows, largest variance first. */
  components: Float64Array;
  dims: number;
}

/** Largest PCA subspace kept: bounds the eigen-decompositions (ml-matrix, O(d^3)) to under a second. */
export const MAX_PCA_DIMS = 256;
/** Rows used to estimate covariances at most; more adds time, not accuracy. */
const MAX_FIT_ROWS = 20_000;

/** Evenly spaced row numbers, ascending, at most `max` of `count` (all of them when `count <= max`). */
export function sampleRows(count: number, max: number): number[] {
  if (count <= max) return Array.from({ length: count }, (_, i) => i);
  const step = count / max;
  return Array.from({ length: max }, (_, i) => Math.floor(i * step));
}

/**
 * The principal subspace of `vectors` (row-major, `dim` values per row): top eigenvectors of the
 * covariance, at most {@link MAX_PCA_DIMS} and at most rows - 1.
 */
export function fitPca(vectors: Float32Array, dim: number, maxDims = MAX_PCA_DIMS): PcaBasis {
  const count = vectors.length / dim;
  const rows = sampleRows(count, MAX_FIT_ROWS);
  const mean = new Float64Array(dim);
  for (const r of rows)
    for (let d = 0; d < dim; d++) mean[d] = (mean[d] as number) + (vectors[r * dim + d] as number);
  for (let d = 0; d < dim; d++) mean[d] = (mean[d] as number) / rows.length;
  const cov = new Float64Array(dim * dim);
  const centred = new Float64Array(dim);
  for (const r of rows) {
    for (let d = 0; d < dim; d++) centred[d] = (vectors[r * dim + d] as number) - (mean[d] as number);
    for (let i = 0; i < dim; i++) {
      const ci = centred[i] as number;
      if (ci === 0) continue;
      const off = i * dim;
      for (let j = i; j < dim; j++) cov[off + j] = (cov[off + j] as number) + ci * (centred[j] as number);
    }
  }
  for (let i = 0; i < dim; i++)
    for (let j = i; j < dim; j++) {
      const v = (cov[i * dim + j] as number) / rows.length;
      cov[i * dim + j] = v;
      cov[j * dim + i] = v;
    }
  const dims = Math.max(1, Math.min(maxDims, rows.length - 1, dim));
  const components = topEigenvectors(cov, dim, dims);
  return { inDim: dim, mean, components, dims };
}

/**
 * The `k` leading eigenvectors of a symmetric `n` x `n` matrix (row-major), as `k` rows of `n` values,
 * largest eigenvalue first: randomized subspace iteration (Halko, Martinsson & Tropp, SIAM Review 2011,
 * Algorithm 4.4) with a Rayleigh-Ritz step, so only a k x k eigen-decomposition is needed (a full
 * 1280 x 1280 one takes ml-matrix about 10 s).
 */
export function topEigenvectors(a: Float64Array, n: number, k: number): Float64Array {
  if (k >= n / 2) {
    const evd = new EigenvalueDecomposition(
      new Matrix(Array.from({ length: n }, (_, i) => Array.from(a.subarray(i * n, (i + 1) * n)))),
      { assumeSymmetric: true },
    );
    const out = new Float64Array(k * n);
    for (let c = 0; c < k; c++)
      for (let d = 0; d < n; d++) out[c * n + d] = evd.eigenvectorMatrix.get(d, n - 1 - c);
    return out;
  }
  const width = Math.min(n, k + 16);
  // Basis vectors as rows (width x n); a fixed seed keeps rebuilds reproducible.
  let q = new Float64Array(width * n);
  let seed = 12345;
  for (let i = 0; i < q.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    q[i] = seed / 0x7fffffff - 0.5;
  }
  const multiply = (basis: Float64Array) => {
    const out = new Float64Array(width * n);
    for (let r = 0; r < width; r++) {
      const b = basis.subarray(r * n, (r + 1) * n);
      const o = out.subarray(r * n, (r + 1) * n);
      for (let i = 0; i < n; i++) {
        let s = 0;
        const off = i * n;
        for (let j = 0; j < n; j++) s += (a[off + j] as number) * (b[j] as number);
        o[i] = s;
      }
    }
    return out;
  };
  const orthonormalise = (basis: Float64Array) => {
    for (let r = 0; r < width; r++) {
      const v = basis.subarray(r * n, (r + 1) * n);
      for (let pass = 0; pass < 2; pass++)
        for (let s = 0; s < r; s++) {
          const u = basis.subarray(s * n, (s + 1) * n);
          let dot = 0;
          for (let i = 0; i < n; i++) dot += (u[i] as number) * (v[i] as number);
          for (let i = 0; i < n; i++) v[i] = (v[i] as number) - dot * (u[i] as number);
        }
      let norm = 0;
      for (let i = 0; i < n; i++) norm += (v[i] as number) ** 2;
      norm = Math.sqrt(norm) || 1;
      for (let i = 0; i < n; i++) v[i] = (v[i] as number) / norm;
    }
  };
  orthonormalise(q);
  for (let it = 0; it < 3; it++) {
    q = multiply(q);
    orthonormalise(q);
  }
  const aq = multiply(q);
  const small = new Matrix(width, width);
  for (let r = 0; r < width; r++)
    for (let c = 0; c < width; c++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += (q[r * n + i] as number) * (aq[c * n + i] as number);
      small.set(r, c, s);
    }
  const sym = small.add(small.transpose()).mul(0.5);
  const e = new EigenvalueDecomposition(sym, { assumeSymmetric: true }).eigenvectorMatrix;
  const out = new Float64Array(k * n);
  for (let c = 0; c < k; c++) {
    const col = width - 1 - c;
    const o = out.subarray(c * n, (c + 1) * n);
    for (let r = 0; r < width; r++) {
      const w = e.get(r, col);
      for (let i = 0; i < n; i++) o[i] = (o[i] as number) + w * (q[r * n + i] as number);
    }
  }
  return out;
}

/** Rows of `vectors` expressed in the PCA basis (centred). */
export function toPca(basis: PcaBasis, vectors: Float32Array, rows: readonly number[]): Float64Array[] {
  const { inDim, dims, components, mean } = basis;
  const centred = new Float64Array(inDim);
  return rows.map((r) => {
    for (let d = 0; d < inDim; d++) centred[d] = (vectors[r * inDim + d] as number) - (mean[d] as number);
    const z = new Float64Array(dims);
    for (let k = 0; k < dims; k++) {
      let s = 0;
      const off = k * inDim;
      for (let d = 0; d < inDim; d++) s += (components[off + d] as number) * (centred[d] as number);
      z[k] = s;
    }
    return z;
  });
}

/**
 * The within-class and between-class covariances of PCA coordinates `z` with class `labels`
 * (each class weighted by its size).
 */
export function classScatter(z: readonly Float64Array[], labels: readonly number[], dims: number) {
  const means = new Map<number, { sum: Float64Array; n: number }>();
  z.forEach((v, i) => {
    const l = labels[i] as number;
    let m = means.get(l);
    if (!m) {
      m = { sum: new Float64Array(dims), n: 0 };
      means.set(l, m);
    }
    for (let d = 0; d < dims; d++) m.sum[d] = (m.sum[d] as number) + (v[d] as number);
    m.n++;
  });
  const total = new Float64Array(dims);
  for (const m of means.values()) {
    for (let d = 0; d < dims; d++) {
      total[d] = (total[d] as number) + (m.sum[d] as number);
      m.sum[d] = (m.sum[d] as number) / m.n;
    }
  }
  for (let d = 0; d < dims; d++) total[d] = (total[d] as number) / z.length;
  const sw = new Matrix(dims, dims);
  const diff = new Float64Array(dims);
  const accumulate = (target: Matrix, weight: number) => {
    for (let i = 0; i < dims; i++) {
      const di = (diff[i] as number) * weight;
      if (di === 0) continue;
      for (let j = i; j < dims; j++) target.set(i, j, target.get(i, j) + di * (diff[j] as number));
    }
  };
  z.forEach((v, i) => {
    const m = means.get(labels[i] as number);
    if (!m) return;
    for (let d = 0; d < dims; d++) diff[d] = (v[d] as number) - (m.sum[d] as number);
    accumulate(sw, 1);
  });
  const sb = new Matrix(dims, dims);
  for (const m of means.values()) {
    for (let d = 0; d < dims; d++) diff[d] = (m.sum[d] as number) - (total[d] as number);
    accumulate(sb, m.n);
  }
  for (const s of [sw, sb])
    for (let i = 0; i < dims; i++)
      for (let j = i; j < dims; j++) {
        const v = s.get(i, j) / z.length;
        s.set(i, j, v);
        s.set(j, i, v);
      }
  return { sw, sb, classes: means.size };
}

/**
 * Fits the discriminative whitening in PCA space and composes it with the PCA into one matrix.
 * @param z - PCA coordinates of the training rows; `labels[i]` the class of row i.
 */
export function fitProjection(
  basis: PcaBasis,
  z: readonly Float64Array[],
  labels: readonly number[],
  params: FitParams,
): Projection {
  const p = basis.dims;
  const { sw, sb, classes } = classScatter(z, labels, p);
  const keep = Math.max(1, Math.min(p, params.axes ?? classes - 1));
  let trace = 0;
  for (let i = 0; i < p; i++) trace += sw.get(i, i);
  const ridge = (params.shrinkage * trace) / p;
  const shrunk = sw.clone().mul(1 - params.shrinkage);
  for (let i = 0; i < p; i++) shrunk.set(i, i, shrunk.get(i, i) + ridge + 1e-12);
  // Sw^{-1/2} from its eigen-decomposition.
  const e = new EigenvalueDecomposition(shrunk, { assumeSymmetric: true });
  const u = e.eigenvectorMatrix;
  const inv = e.realEigenvalues.map((l) => 1 / Math.sqrt(Math.max(l, 1e-12)));
  const whiten = new Matrix(p, p);
  for (let i = 0; i < p; i++)
    for (let j = 0; j < p; j++) {
      let s = 0;
      for (let k = 0; k < p; k++) s += u.get(i, k) * (inv[k] as number) * u.get(j, k);
      whiten.set(i, j, s);
    }
  // Rotate onto the between-class axes (largest first); a rotation keeps cosines, it only orders dims.
  const rotated = whiten.mmul(sb).mmul(whiten);
  const r = new EigenvalueDecomposition(rotated, { assumeSymmetric: true }).eigenvectorMatrix;
  const order = Array.from({ length: keep }, (_, k) => p - 1 - k);
  const w = new Matrix(keep, p);
  order.forEach((col, k) => {
    for (let j = 0; j < p; j++) {
      let s = 0;
      for (let i = 0; i < p; i++) s += r.get(i, col) * whiten.get(i, j);
      w.set(k, j, s);
    }
  });
  // Compose with the PCA: matrix = w (p x p) * components (p x inDim).
  const { inDim, components } = basis;
  const matrix = new Float32Array(keep * inDim);
  const row = new Float64Array(inDim);
  for (let k = 0; k < keep; k++) {
    row.fill(0);
    for (let j = 0; j < p; j++) {
      const wk = w.get(k, j);
      const off = j * inDim;
      for (let d = 0; d < inDim; d++) row[d] = (row[d] as number) + wk * (components[off + d] as number);
    }
    matrix.set(row, k * inDim);
  }
  return {
    inDim,
    outDim: keep,
    mean: Float32Array.from(basis.mean),
    matrix,
    blend: params.blend,
    shrinkage: params.shrinkage,
    scope: params.scope ?? "all",
  };
}

/**
 * The vector indexed and searched in the adapted space: `[sqrt(1-blend) x, sqrt(blend) y]`, unit length
 * when `x` is. A matrix-vector product of outDim x inDim (about 0.3 M multiply-adds for 1280 x 256).
 * @param x - an L2-normalised raw embedding of `inDim` values.
 */
export function adaptVector(p: Projection, x: Float32Array): Float32Array {
  const { inDim, outDim, mean, matrix, blend } = p;
  const y = new Float64Array(outDim);
  let norm = 0;
  for (let k = 0; k < outDim; k++) {
    let s = 0;
    const off = k * inDim;
    for (let d = 0; d < inDim; d++)
      s += (matrix[off + d] as number) * ((x[d] as number) - (mean[d] as number));
    y[k] = s;
    norm += s * s;
  }
  const out = new Float32Array(inDim + outDim);
  const a = Math.sqrt(1 - blend);
  for (let d = 0; d < inDim; d++) out[d] = a * (x[d] as number);
  const b = norm > 0 ? Math.sqrt(blend) / Math.sqrt(norm) : 0;
  for (let k = 0; k < outDim; k++) out[inDim + k] = b * (y[k] as number);
  return out;
}

/** {@link adaptVector} over `count` row-major vectors. */
export function adaptVectors(p: Projection, vectors: Float32Array): Float32Array {
  const count = vectors.length / p.inDim;
  const width = p.inDim + p.outDim;
  const out = new Float32Array(count * width);
  for (let i = 0; i < count; i++)
    out.set(adaptVector(p, vectors.subarray(i * p.inDim, (i + 1) * p.inDim)), i * width);
  return out;
}
