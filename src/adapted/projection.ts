import { CholeskyDecomposition, EigenvalueDecomposition, Matrix } from "ml-matrix";
import type { DenseKernels } from "./dense.js";
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

/** Rows accumulated together into a d x d sum of outer products: the sum is read once per block, not per row. */
const OUTER_BLOCK = 16;

/**
 * Adds `sum_r c_r c_r^T` of `rows` (`dim` values each, read through `rowAt`) into the upper triangle of
 * `target` (`dim` x `dim`, row-major), blocked by {@link OUTER_BLOCK} rows so the target streams through
 * the cache once per block (a d x d float64 sum of 1280-d rows is 13 MB, larger than the cache).
 */
function addOuterProducts(
  target: Float64Array,
  dim: number,
  rows: number,
  rowAt: (r: number, out: Float64Array) => void,
): void {
  const block = new Float64Array(OUTER_BLOCK * dim);
  const row = new Float64Array(dim);
  // Transposed: column-block layout, block[i * B + b] = value i of the block's row b.
  for (let r0 = 0; r0 < rows; r0 += OUTER_BLOCK) {
    const b = Math.min(OUTER_BLOCK, rows - r0);
    block.fill(0);
    for (let k = 0; k < b; k++) {
      rowAt(r0 + k, row);
      for (let i = 0; i < dim; i++) block[i * OUTER_BLOCK + k] = row[i] as number;
    }
    for (let i = 0; i < dim; i++) {
      const bi = i * OUTER_BLOCK;
      const off = i * dim;
      for (let j = i; j < dim; j++) {
        const bj = j * OUTER_BLOCK;
        let s = 0;
        for (let k = 0; k < b; k++) s += (block[bi + k] as number) * (block[bj + k] as number);
        target[off + j] = (target[off + j] as number) + s;
      }
    }
  }
}

/** Copies the upper triangle of a `dim` x `dim` row-major matrix onto its lower one. */
function mirrorUpper(m: Float64Array, dim: number): void {
  for (let i = 0; i < dim; i++) for (let j = i + 1; j < dim; j++) m[j * dim + i] = m[i * dim + j] as number;
}

/**
 * The principal subspace of `vectors` (row-major, `dim` values per row): top eigenvectors of the
 * covariance, at most {@link MAX_PCA_DIMS} and at most rows - 1. The products run in `dense`.
 *
 * When every direction of the rows is kept (rows - 1 <= `maxDims`, e.g. the 210-image sample gallery)
 * the basis comes from the rows x rows Gram matrix instead (the snapshot method, Sirovich 1987): the same
 * subspace exactly, from an eigen-decomposition of rows x rows instead of an iteration on dim x dim.
 * Everything fitted in the basis (whitening, discriminants) is invariant to a rotation within it.
 */
export async function fitPca(
  vectors: Float32Array,
  dim: number,
  dense: DenseKernels,
  maxDims = MAX_PCA_DIMS,
): Promise<PcaBasis> {
  const count = vectors.length / dim;
  const rows = sampleRows(count, MAX_FIT_ROWS);
  const n = rows.length;
  const mean = new Float64Array(dim);
  for (const r of rows)
    for (let d = 0; d < dim; d++) mean[d] = (mean[d] as number) + (vectors[r * dim + d] as number);
  for (let d = 0; d < dim; d++) mean[d] = (mean[d] as number) / n;
  const x = new Float64Array(n * dim);
  rows.forEach((r, i) => {
    for (let d = 0; d < dim; d++) x[i * dim + d] = (vectors[r * dim + d] as number) - (mean[d] as number);
  });
  const dims = Math.max(1, Math.min(maxDims, n - 1, dim));
  if (n - 1 <= maxDims && n > 1) {
    const components = await snapshotPca(x, n, dim, dims, dense);
    if (components) return { inDim: dim, mean, components, dims };
  }
  const cov = await dense.gemm({ a: x, b: x, rows: dim, inner: n, cols: dim, transA: true });
  for (let i = 0; i < cov.length; i++) cov[i] = (cov[i] as number) / n;
  symmetrise(cov, dim);
  const components = await topEigenvectors(cov, dim, dims, dense);
  return { inDim: dim, mean, components, dims };
}

/** Averages a square row-major matrix with its transpose (products leave asymmetries of rounding). */
function symmetrise(m: Float64Array, dim: number): void {
  for (let i = 0; i < dim; i++)
    for (let j = i + 1; j < dim; j++) {
      const v = ((m[i * dim + j] as number) + (m[j * dim + i] as number)) / 2;
      m[i * dim + j] = v;
      m[j * dim + i] = v;
    }
}

/**
 * Principal axes from the Gram matrix `G = X X^T` of `n` centred rows `x`: `v_k = X^T u_k / sqrt(l_k)` for
 * its eigenpairs `(l_k, u_k)` (ml-matrix's symmetric eigen-decomposition), largest first.
 * @returns null when fewer than `dims` eigenvalues are clearly above zero (duplicate rows): the caller
 *   then uses the covariance route, which completes the basis.
 */
async function snapshotPca(
  x: Float64Array,
  n: number,
  dim: number,
  dims: number,
  dense: DenseKernels,
): Promise<Float64Array | null> {
  const g = await dense.gemm({ a: x, b: x, rows: n, inner: dim, cols: n, transB: true });
  symmetrise(g, n);
  const e = new EigenvalueDecomposition(
    new Matrix(Array.from({ length: n }, (_, i) => Array.from(g.subarray(i * n, (i + 1) * n)))),
    { assumeSymmetric: true },
  );
  const values = e.realEigenvalues;
  const top = values[n - 1] ?? 0;
  if (!(top > 0) || (values[n - dims] ?? 0) <= 1e-10 * top) return null;
  // Scaled eigenvectors as rows (dims x n), times X (n x dim).
  const u = new Float64Array(dims * n);
  for (let k = 0; k < dims; k++) {
    const col = n - 1 - k;
    const scale = 1 / Math.sqrt(values[col] as number);
    for (let a = 0; a < n; a++) u[k * n + a] = e.eigenvectorMatrix.get(a, col) * scale;
  }
  return dense.gemm({ a: u, b: x, rows: dims, inner: n, cols: dim });
}

/**
 * The `k` leading eigenvectors of a symmetric `n` x `n` matrix (row-major), as `k` rows of `n` values,
 * largest eigenvalue first: randomized subspace iteration (Halko, Martinsson & Tropp, SIAM Review 2011,
 * Algorithm 4.4) with a Rayleigh-Ritz step, so only a k x k eigen-decomposition is needed (a full
 * 1280 x 1280 one takes ml-matrix about 10 s). The products with `a` run in `dense`.
 */
export async function topEigenvectors(
  a: Float64Array,
  n: number,
  k: number,
  dense: DenseKernels,
): Promise<Float64Array> {
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
  let q: Float64Array = new Float64Array(width * n);
  let seed = 12345;
  for (let i = 0; i < q.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    q[i] = seed / 0x7fffffff - 0.5;
  }
  // Rows of Q A^T = (A Q^T)^T: A times every basis vector (A is symmetric).
  const multiply = (basis: Float64Array) =>
    dense.gemm({ a: basis, b: a, rows: width, inner: n, cols: n, transB: true });
  const gramSchmidt = (basis: Float64Array) => {
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
    return basis;
  };
  // CholeskyQR2 (Fukaya et al., 2014): Q <- L^-1 Q with L L^T = Q Q^T, twice; the same orthonormal rows as
  // Gram-Schmidt in order, with the products in `dense`. Rows too close to dependent for it (the Cholesky
  // fails) take Gram-Schmidt.
  const choleskyQr = async (basis: Float64Array): Promise<Float64Array | null> => {
    const g = await dense.gemm({ a: basis, b: basis, rows: width, inner: n, cols: width, transB: true });
    symmetrise(g, width);
    const chol = new CholeskyDecomposition(
      new Matrix(Array.from({ length: width }, (_, i) => Array.from(g.subarray(i * width, (i + 1) * width)))),
    );
    if (!chol.isPositiveDefinite()) return null;
    const lower = chol.lowerTriangularMatrix;
    for (let i = 0; i < width; i++) if (!(lower.get(i, i) > 1e-8 * Math.sqrt(g[0] ?? 1))) return null;
    // L^-1 by forward substitution, column by column (lower triangular, w^3 / 6 multiply-adds).
    const l = lower.to1DArray();
    const li = new Float64Array(width * width);
    for (let c = 0; c < width; c++) {
      li[c * width + c] = 1 / (l[c * width + c] as number);
      for (let i = c + 1; i < width; i++) {
        let sum = 0;
        for (let k = c; k < i; k++) sum += (l[i * width + k] as number) * (li[k * width + c] as number);
        li[i * width + c] = -sum / (l[i * width + i] as number);
      }
    }
    return dense.gemm({ a: li, b: basis, rows: width, inner: width, cols: n });
  };
  const orthonormalise = async (basis: Float64Array): Promise<Float64Array> => {
    const once = await choleskyQr(basis);
    const twice = once && (await choleskyQr(once));
    return twice ?? gramSchmidt(basis);
  };
  q = await orthonormalise(q);
  for (let it = 0; it < 3; it++) q = await orthonormalise(await multiply(q));
  const aq = await multiply(q);
  const qaq = await dense.gemm({ a: q, b: aq, rows: width, inner: n, cols: width, transB: true });
  const small = new Matrix(width, width);
  for (let r = 0; r < width; r++)
    for (let c = 0; c < width; c++) small.set(r, c, qaq[r * width + c] as number);
  const sym = small.add(small.transpose()).mul(0.5);
  const e = new EigenvalueDecomposition(sym, { assumeSymmetric: true }).eigenvectorMatrix;
  // Ritz vectors: rows of E_k^T Q (k x width times width x n).
  const ek = new Float64Array(k * width);
  for (let c = 0; c < k; c++) for (let r = 0; r < width; r++) ek[c * width + r] = e.get(r, width - 1 - c);
  return dense.gemm({ a: ek, b: q, rows: k, inner: width, cols: n });
}

/** Rows of `vectors` expressed in the PCA basis (centred), as views of one buffer; products in `dense`. */
export async function toPca(
  basis: PcaBasis,
  vectors: Float32Array,
  rows: readonly number[],
  dense: DenseKernels,
): Promise<Float64Array[]> {
  const { inDim, dims, components, mean } = basis;
  const x = new Float64Array(rows.length * inDim);
  rows.forEach((r, i) => {
    for (let d = 0; d < inDim; d++)
      x[i * inDim + d] = (vectors[r * inDim + d] as number) - (mean[d] as number);
  });
  const z = await dense.gemm({
    a: x,
    b: components,
    rows: rows.length,
    inner: inDim,
    cols: dims,
    transB: true,
  });
  return rows.map((_, i) => z.subarray(i * dims, (i + 1) * dims));
}

/**
 * First and second moments of labelled PCA coordinates: the class scatters of any union of row sets
 * (the training folds of a cross-validation) follow from sums of these, without another pass over rows.
 */
export interface ScatterMoments {
  dims: number;
  /** Rows per class label (labels are 0 .. classes - 1). */
  count: Float64Array;
  /** Per class, the sum of its rows: classes x dims, row-major. */
  sum: Float64Array;
  /** `sum_i z_i z_i^T` over every row: dims x dims, row-major, symmetric. */
  second: Float64Array;
}

/**
 * The moments of rows `z` with class `labels` (integers in 0 .. `classes` - 1).
 * @param rows - which rows of `z` to include; default all.
 */
export function scatterMoments(
  z: readonly Float64Array[],
  labels: readonly number[],
  dims: number,
  classes: number,
  rows?: readonly number[],
): ScatterMoments {
  const which = rows ?? z.map((_, i) => i);
  const count = new Float64Array(classes);
  const sum = new Float64Array(classes * dims);
  for (const i of which) {
    const l = labels[i] as number;
    const v = z[i] as Float64Array;
    count[l] = (count[l] as number) + 1;
    const o = l * dims;
    for (let d = 0; d < dims; d++) sum[o + d] = (sum[o + d] as number) + (v[d] as number);
  }
  const second = new Float64Array(dims * dims);
  addOuterProducts(second, dims, which.length, (r, out) => {
    out.set(z[which[r] as number] as Float64Array);
  });
  mirrorUpper(second, dims);
  return { dims, count, sum, second };
}

/** The moments of the union of disjoint row sets: element-wise sums. */
export function addMoments(parts: readonly ScatterMoments[]): ScatterMoments {
  const first = parts[0];
  if (!first) throw new Error("addMoments needs at least one part");
  const out: ScatterMoments = {
    dims: first.dims,
    count: new Float64Array(first.count.length),
    sum: new Float64Array(first.sum.length),
    second: new Float64Array(first.second.length),
  };
  for (const p of parts) {
    for (const key of ["count", "sum", "second"] as const) {
      const t = out[key];
      const s = p[key];
      for (let i = 0; i < t.length; i++) t[i] = (t[i] as number) + (s[i] as number);
    }
  }
  return out;
}

/**
 * The within-class and between-class covariances from moments (each class weighted by its size, both
 * divided by the row count): `Sw = (sum_i z z^T - sum_c s_c s_c^T / n_c) / n`,
 * `Sb = sum_c n_c (mu_c - mu)(mu_c - mu)^T / n`, with the between-class part also as its factor
 * `M` (dims x present classes, column c = sqrt(n_c / n) (mu_c - mu)), `Sb = M M^T`.
 */
export function classScatter(m: ScatterMoments) {
  const { dims, count, sum, second } = m;
  const present = [...count.keys()].filter((c) => (count[c] as number) > 0);
  const n = present.reduce((s, c) => s + (count[c] as number), 0);
  const total = new Float64Array(dims);
  for (const c of present)
    for (let d = 0; d < dims; d++) total[d] = (total[d] as number) + (sum[c * dims + d] as number) / n;
  const sw = new Matrix(dims, dims);
  const factor = new Matrix(dims, present.length);
  const mu = new Float64Array(dims);
  for (let i = 0; i < dims; i++) for (let j = 0; j < dims; j++) sw.set(i, j, second[i * dims + j] as number);
  present.forEach((c, k) => {
    const nc = count[c] as number;
    for (let d = 0; d < dims; d++) mu[d] = (sum[c * dims + d] as number) / nc;
    for (let i = 0; i < dims; i++) {
      const a = nc * (mu[i] as number);
      if (a === 0) continue;
      for (let j = i; j < dims; j++) sw.set(i, j, sw.get(i, j) - a * (mu[j] as number));
    }
    const w = Math.sqrt(nc / n);
    for (let d = 0; d < dims; d++) factor.set(d, k, w * ((mu[d] as number) - (total[d] as number)));
  });
  // Exactly symmetric (Cholesky checks): the upper triangle, mirrored.
  for (let i = 0; i < dims; i++)
    for (let j = i; j < dims; j++) {
      const v = sw.get(i, j) / n;
      sw.set(i, j, v);
      sw.set(j, i, v);
    }
  const sb = factor.mmul(factor.transpose());
  return { sw, sb, factor, classes: present.length };
}

/** The discriminative whitening in PCA space: `keep` rows of `dims` values (row-major), largest first. */
export interface Whitening {
  keep: number;
  dims: number;
  w: Float64Array;
}

/**
 * The discriminative whitening from class moments: the leading generalised eigenvectors of
 * `(Sb, Sw_shrunk)`, each scaled so `w^T Sw_shrunk w = 1`.
 *
 * Since `Sb = M M^T` has rank classes - 1, they come from the classes x classes matrix
 * `G = M^T Sw^-1 M` (ml-matrix: a Cholesky solve and a small eigen-decomposition): for its eigenpairs
 * `(l, u)`, `w = Sw^-1 M u / sqrt(l)` (the same vectors as whitening with `Sw^-1/2` and rotating onto the
 * principal axes of the whitened `Sb`, up to sign, which no inner product sees). More axes than that rank,
 * or a scatter that is not positive definite, take the full route: `Sw^-1/2` from an eigen-decomposition,
 * then the eigenvectors of `Sw^-1/2 Sb Sw^-1/2`.
 */
export function fitWhitening(m: ScatterMoments, params: Pick<FitParams, "shrinkage" | "axes">): Whitening {
  const p = m.dims;
  const { sw, sb, factor, classes } = classScatter(m);
  const keep = Math.max(1, Math.min(p, params.axes ?? classes - 1));
  let trace = 0;
  for (let i = 0; i < p; i++) trace += sw.get(i, i);
  const ridge = (params.shrinkage * trace) / p;
  const shrunk = sw.clone().mul(1 - params.shrinkage);
  for (let i = 0; i < p; i++) shrunk.set(i, i, shrunk.get(i, i) + ridge + 1e-12);
  if (keep <= classes - 1) {
    const small = smallWhitening(shrunk, factor, keep);
    if (small) return { keep, dims: p, w: small };
  }
  // Sw^{-1/2} from its eigen-decomposition.
  const e = new EigenvalueDecomposition(shrunk, { assumeSymmetric: true });
  const u = e.eigenvectorMatrix;
  const inv = e.realEigenvalues.map((l) => 1 / Math.sqrt(Math.max(l, 1e-12)));
  const whiten = u.mmul(Matrix.diag(inv)).mmul(u.transpose());
  // Rotate onto the between-class axes (largest first); a rotation keeps cosines, it only orders dims.
  const rotated = whiten.mmul(sb).mmul(whiten);
  const r = new EigenvalueDecomposition(rotated, { assumeSymmetric: true }).eigenvectorMatrix;
  const w = new Float64Array(keep * p);
  for (let k = 0; k < keep; k++) {
    const col = p - 1 - k;
    for (let j = 0; j < p; j++) {
      let s = 0;
      for (let i = 0; i < p; i++) s += r.get(i, col) * whiten.get(i, j);
      w[k * p + j] = s;
    }
  }
  return { keep, dims: p, w };
}

/** {@link fitWhitening}'s classes x classes route; null when it does not apply (see there). */
function smallWhitening(shrunk: Matrix, factor: Matrix, keep: number): Float64Array | null {
  const chol = new CholeskyDecomposition(shrunk);
  if (!chol.isPositiveDefinite()) return null;
  const solved = chol.solve(factor); // Sw^-1 M, dims x classes
  const g = factor.transpose().mmul(solved);
  const sym = g.add(g.transpose()).mul(0.5);
  const e = new EigenvalueDecomposition(sym, { assumeSymmetric: true });
  const values = e.realEigenvalues;
  const c = values.length;
  const top = values[c - 1] ?? 0;
  // Every kept axis needs a clearly positive eigenvalue (classes with equal means give none).
  if (!(top > 0) || (values[c - keep] ?? 0) <= 1e-10 * top) return null;
  const p = shrunk.rows;
  const w = new Float64Array(keep * p);
  const u = e.eigenvectorMatrix;
  for (let k = 0; k < keep; k++) {
    const col = c - 1 - k;
    const scale = 1 / Math.sqrt(values[col] as number);
    for (let d = 0; d < p; d++) {
      let s = 0;
      for (let j = 0; j < c; j++) s += solved.get(d, j) * u.get(j, col);
      w[k * p + d] = s * scale;
    }
  }
  return w;
}

/** Composes a whitening (in PCA space) with the PCA into one `keep` x inDim projection. */
export function composeProjection(basis: PcaBasis, whitening: Whitening, params: FitParams): Projection {
  const { inDim, components } = basis;
  const { keep, dims: p, w } = whitening;
  const matrix = new Float32Array(keep * inDim);
  const row = new Float64Array(inDim);
  for (let k = 0; k < keep; k++) {
    row.fill(0);
    for (let j = 0; j < p; j++) {
      const wk = w[k * p + j] as number;
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
 * Fits the discriminative whitening in PCA space and composes it with the PCA into one matrix.
 * @param z - PCA coordinates of the training rows; `labels[i]` the class of row i (0 .. classes - 1).
 */
export function fitProjection(
  basis: PcaBasis,
  z: readonly Float64Array[],
  labels: readonly number[],
  params: FitParams,
): Projection {
  const classes = labels.reduce((m, l) => Math.max(m, l + 1), 0);
  return composeProjection(
    basis,
    fitWhitening(scatterMoments(z, labels, basis.dims, classes), params),
    params,
  );
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
