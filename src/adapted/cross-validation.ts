import { createDenseKernels, type DenseKernels } from "./dense.js";
import {
  addMoments,
  type FitParams,
  fitPca,
  fitProjection,
  fitWhitening,
  type PcaBasis,
  type Projection,
  type ScatterMoments,
  sampleRows,
  scatterMoments,
  toPca,
  type Whitening,
} from "./projection.js";
import {
  discriminantFromMoments,
  fitDiscriminant,
  foldTypePrior,
  type SubspaceDiscriminant,
  subspaceLean,
  type TypePrior,
} from "./type-prior.js";

/** Settings of the cross-validation gate. */
export interface GateSettings {
  /** Folds (k of k-fold). */
  folds: number;
  /** Smallest gallery (images) worth adapting; smaller galleries stay raw. */
  minGallery: number;
  /** A class with at least this many gallery images must not lose P@10 (beyond `classTolerance`). */
  minClassImages: number;
  /** How much P@10 a well-populated class may lose against raw (noise of a few held-out images). */
  classTolerance: number;
  /** How much the overall P@10 must rise before the adapted space is worth serving. */
  minGain: number;
  /** Largest PCA subspace before the whitening. */
  pcaDims: number;
  /** Images used by the cross-validation at most (an even sample); bounds the rebuild time. */
  maxImages: number;
  /**
   * Raw cosine at or above which an image and its nearest neighbour count as near-duplicates (shots of
   * one part) and share a fold; 1 disables the grouping.
   */
  nearDuplicateCos: number;
  /** Hyper-parameters tried; the best one that passes the gate is chosen. */
  candidates: readonly FitParams[];
  /**
   * The type prior (`type-prior.ts`), tried once a projection is chosen, on galleries with both image
   * types: each descriptor x each beta; kept when it raises the merged P@10 by `minGain` with the class
   * condition against raw. Empty `betas`: never.
   */
  typePrior: { betas: readonly number[]; shrinkage: number };
}

/** Images the final projection is fitted on at most. */
const FINAL_FIT_MAX = 20_000;

/** Defaults; `candidates` cover a light and a strong shrinkage, blended and pure. */
export const DEFAULT_GATE: GateSettings = {
  folds: 5,
  minGallery: 50,
  minClassImages: 10,
  classTolerance: 0.01,
  minGain: 0.005,
  pcaDims: 256,
  maxImages: 4000,
  nearDuplicateCos: 0.9,
  candidates: [0.05, 0.3].flatMap((shrinkage) =>
    [0.5, 1].flatMap((blend) => (["all", "defect"] as const).map((scope) => ({ shrinkage, blend, scope }))),
  ),
  // Shifts of 0.1-0.4 cosine: small enough that a confident, clearly similar hit of the other type still
  // ranks, large enough to reorder the near-ties a small defect makes. Chosen per gallery by the folds.
  typePrior: { betas: [0.1, 0.2, 0.4], shrinkage: 0.05 },
};

/**
 * Texture descriptors of the training rows the gate reads ({@link trainingRowIds}): row `rowIds[i]`'s
 * descriptor is `vectors[i * dim .. (i + 1) * dim)`.
 */
export interface TrainingTextures {
  dim: number;
  rowIds: Int32Array;
  vectors: Float32Array;
}

/**
 * The rows of an `n`-image training set the gate reads beyond the embeddings' (the cross-validation sample
 * and the final fit's sample), ascending: what a caller must give texture descriptors for.
 */
export function trainingRowIds(n: number, settings: GateSettings = DEFAULT_GATE): number[] {
  return [...new Set([...sampleRows(n, settings.maxImages), ...sampleRows(n, FINAL_FIT_MAX)])].sort(
    (a, b) => a - b,
  );
}

/** Cross-validated P@10, overall and per class. */
export interface CvScore {
  p10: number;
  perClass: { label: string; images: number; p10: number }[];
}

/** What the gate decided for one gallery, and why. */
export interface AdaptationDecision {
  space: "adapted" | "raw";
  /** One sentence for status. */
  reason: string;
  /** Raw P@10 under the same folds; null when no cross-validation ran. */
  raw: CvScore | null;
  /** Best candidate's P@10, whether chosen or not; null when no cross-validation ran. */
  best: (CvScore & { params: FitParams }) | null;
  /**
   * The type prior cross-validation chose for searches of both image types (merged P@10 with it), or
   * null; `typePriorReason` says why not when null.
   */
  typePrior: (CvScore & { descriptor: TypePrior["descriptor"]; beta: number }) | null;
  typePriorReason: string;
  /** Milliseconds the decision and the final fit took. */
  fitMs: number;
}

/**
 * Decides between the raw embedding and a learned projection by k-fold cross-validation on the gallery
 * itself (each fold's images query the other folds, the projection fitted on those folds only), then fits
 * the chosen projection on the whole gallery. The PCA basis is label-free and shared by the folds.
 * @param vectors - row-major L2-normalised gallery embeddings, `dim` values each: of every row, or of the
 *   rows `rowIds` names only (the gate reads no other; {@link trainingRowIds}).
 * @param labels - class per row (e.g. `product/defect`), every row.
 */
export async function decideAdaptation({
  vectors,
  rowIds,
  dim,
  labels,
  isDefect,
  textures,
  settings = DEFAULT_GATE,
  threads = 1,
}: {
  vectors: Float32Array;
  /** The rows `vectors` holds, ascending (at least {@link trainingRowIds}); default every row in order. */
  rowIds?: Int32Array | undefined;
  dim: number;
  labels: readonly string[];
  /** Texture descriptors (`src/embedding/texture.ts`) of the training rows; a type prior candidate. */
  textures?: TrainingTextures | undefined;
  /** Per row, whether it is a defect image (for candidates that adapt the defect index only); default all. */
  isDefect?: readonly boolean[];
  settings?: GateSettings;
  /** onnxruntime intra-op threads for the dense products ({@link createDenseKernels}). */
  threads?: number;
}): Promise<{ decision: AdaptationDecision; projection: Projection | null }> {
  const dense = createDenseKernels({ threads });
  try {
    return await decide({ vectors, rowIds, dim, labels, isDefect, textures, settings, dense });
  } finally {
    await dense.close();
  }
}

async function decide({
  vectors,
  rowIds,
  dim,
  labels,
  isDefect,
  textures,
  settings,
  dense,
}: {
  vectors: Float32Array;
  rowIds?: Int32Array | undefined;
  dim: number;
  labels: readonly string[];
  textures?: TrainingTextures | undefined;
  isDefect?: readonly boolean[] | undefined;
  settings: GateSettings;
  dense: DenseKernels;
}): Promise<{ decision: AdaptationDecision; projection: Projection | null }> {
  const t0 = performance.now();
  const n = labels.length;
  const counts = new Map<string, number>();
  for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  const raw = (reason: string, rawScore: CvScore | null = null, best: AdaptationDecision["best"] = null) => ({
    decision: {
      space: "raw" as const,
      reason,
      raw: rawScore,
      best,
      typePrior: null,
      typePriorReason: "no adapted space",
      fitMs: performance.now() - t0,
    },
    projection: null,
  });
  if (n < settings.minGallery) {
    return raw(`gallery of ${n} images is under ${settings.minGallery}: too small to learn from`);
  }
  const populated = [...counts.values()].filter((c) => c >= settings.folds).length;
  if (populated < 2) return raw(`fewer than 2 classes with ${settings.folds} or more images`);

  // An even sample bounds the cost (n^2 scores per candidate); the final fit uses every image.
  const rows = sampleRows(n, settings.maxImages);
  const classNames = [...new Set(rows.map((r) => labels[r] as string))].sort();
  const classOf = rows.map((r) => classNames.indexOf(labels[r] as string));
  const vectorOf = rowIds
    ? rowLookup({ dim, rowIds, vectors }, trainingRowIds(n, settings))
    : (row: number) => vectors.subarray(row * dim, (row + 1) * dim);
  if (!vectorOf) throw new Error("the embeddings given do not cover the gate's training rows");
  const sample = packRows(vectorOf, dim, rows);
  // Stratified folds: the i-th group of each class goes to fold i mod k. A group (near-duplicate shots
  // of one part) stays in one fold, else its members answer each other and flatter the held-out figures.
  const rawGram = await gram(sample, dim, dense);
  const groupOf = nearDuplicateGroups(rawGram, rows.length, settings.nearDuplicateCos);
  const seen = new Map<number, number>();
  const groupFold = new Map<number, number>();
  const foldOf = classOf.map((c, i) => {
    const g = groupOf[i] as number;
    const known = groupFold.get(g);
    if (known !== undefined) return known;
    const k = seen.get(c) ?? 0;
    seen.set(c, k + 1);
    groupFold.set(g, k % settings.folds);
    return k % settings.folds;
  });
  const basis = await fitPca(sample, dim, dense, settings.pcaDims);
  const z = await toPca(
    basis,
    sample,
    rows.map((_, i) => i),
    dense,
  );
  const rawScore = score(rawGram, null, classOf, foldOf, classNames, settings.folds);

  // One set of fold fits per (shrinkage, axes); blends and scopes only reweigh the same similarities.
  // The class moments of each fold are summed once; every fit of every fold is built from them.
  const foldMoments = Array.from({ length: settings.folds }, (_, f) =>
    scatterMoments(
      z,
      classOf,
      basis.dims,
      classNames.length,
      foldOf.flatMap((g, i) => (g === f ? [i] : [])),
    ),
  );
  const trainMoments = foldMoments.map((_, f) => addMoments(foldMoments.filter((_, g) => g !== f)));
  const fitKey = (c: FitParams) => `${c.shrinkage}|${c.axes ?? ""}`;
  const adaptedByFit = new Map<string, Float64Array>();
  for (const fit of new Map(settings.candidates.map((c) => [fitKey(c), c])).values()) {
    const adaptedCos = new Float64Array(rows.length * rows.length);
    for (let f = 0; f < settings.folds; f++) {
      const whitening = fitWhitening(trainMoments[f] as ScatterMoments, fit);
      await fillFoldGram(adaptedCos, whitenedRows(whitening, z), whitening.keep, foldOf, f, dense);
    }
    adaptedByFit.set(fitKey(fit), adaptedCos);
  }
  const defectRow = rows.map((r) => isDefect?.[r] ?? true);
  const m = rows.length;
  /** Merged scores of every query row against every gallery row under one candidate. */
  const blendedGram = (params: FitParams) => {
    const adaptedCos = adaptedByFit.get(fitKey(params)) as Float64Array;
    const blended = new Float64Array(rawGram.length);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < m; j++) {
        const k = i * m + j;
        const adapt = params.scope !== "defect" || defectRow[j];
        blended[k] = adapt
          ? (1 - params.blend) * (rawGram[k] as number) + params.blend * (adaptedCos[k] as number)
          : (rawGram[k] as number);
      }
    return blended;
  };
  const scored = settings.candidates.map((params) => {
    const sc = score(blendedGram(params), null, classOf, foldOf, classNames, settings.folds);
    return { params, ...sc };
  });
  const passes = (s: CvScore) =>
    s.perClass.every((c, i) => {
      const r = rawScore.perClass[i];
      return !r || c.images < settings.minClassImages || c.p10 >= r.p10 - settings.classTolerance;
    });
  const ranked = [...scored].sort((a, b) => b.p10 - a.p10);
  const best = ranked[0] ?? null;
  const chosen = ranked.find((s) => passes(s) && s.p10 >= rawScore.p10 + settings.minGain);
  if (!chosen) {
    const loser = best?.perClass.find((c, i) => {
      const r = rawScore.perClass[i];
      return r && c.images >= settings.minClassImages && c.p10 < r.p10 - settings.classTolerance;
    });
    const why = loser
      ? `class ${loser.label} would drop from P@10 ${rawScore.perClass.find((c) => c.label === loser.label)?.p10.toFixed(3)} to ${loser.p10.toFixed(3)}`
      : `P@10 ${best?.p10.toFixed(3)} does not beat raw ${rawScore.p10.toFixed(3)} by ${settings.minGain}`;
    return raw(`cross-validation (${settings.folds}-fold) keeps raw: ${why}`, rawScore, best);
  }
  // Final fit on every image up to FINAL_FIT_MAX (an even sample above: the class scatter of 20,000
  // images is as good as that of a million, at a fiftieth of the time); PCA from the cross-validation sample.
  const fitRows = sampleRows(n, FINAL_FIT_MAX);
  const allClasses = [...counts.keys()].sort();
  const projection = fitProjection(
    basis,
    await toPca(
      basis,
      packRows(vectorOf, dim, fitRows),
      fitRows.map((_, i) => i),
      dense,
    ),
    fitRows.map((r) => allClasses.indexOf(labels[r] as string)),
    chosen.params,
  );
  const textureOf = textures ? rowLookup(textures, [...rows, ...fitRows]) : null;
  const prior = await chooseTypePrior({
    settings,
    merged: blendedGram(chosen.params),
    baseline: chosen,
    passes,
    classOf,
    foldOf,
    classNames,
    defectRow,
    descriptors: async () => [
      { name: "embedding", basis, z },
      ...(textureOf ? [await texturePca(textureOf, textures?.dim ?? 0, rows, settings.pcaDims, dense)] : []),
    ],
  });
  let typePrior: TypePrior | undefined;
  if (prior.chosen) {
    const basisOf = prior.chosen.basis;
    const fitted = fitDiscriminant(
      prior.chosen.descriptor === "texture" && textureOf && textures
        ? await toPca(
            basisOf,
            packRows(textureOf, textures.dim, fitRows),
            fitRows.map((_, i) => i),
            dense,
          )
        : await toPca(
            basisOf,
            packRows(vectorOf, dim, fitRows),
            fitRows.map((_, i) => i),
            dense,
          ),
      fitRows.map((r) => isDefect?.[r] ?? true),
      settings.typePrior.shrinkage,
    );
    if (fitted) typePrior = foldTypePrior(basisOf, fitted, prior.chosen.descriptor, prior.chosen.beta);
  }
  return {
    decision: {
      space: "adapted",
      typePrior:
        prior.chosen && typePrior
          ? { descriptor: prior.chosen.descriptor, beta: prior.chosen.beta, ...prior.chosen.score }
          : null,
      typePriorReason: prior.reason,
      reason: `cross-validation (${settings.folds}-fold, near-duplicates kept in one fold) raises P@10 from ${rawScore.p10.toFixed(3)} to ${chosen.p10.toFixed(3)} with no class worse by more than ${settings.classTolerance} (shrinkage ${chosen.params.shrinkage}, blend ${chosen.params.blend}, ${chosen.params.scope === "defect" ? "defect index only" : "both indexes"})`,
      raw: rawScore,
      best: chosen,
      fitMs: performance.now() - t0,
    },
    projection: typePrior ? { ...projection, typePrior } : projection,
  };
}

/** A type prior candidate's descriptor: its label-free PCA basis and every sample row's coordinates. */
interface PriorDescriptor {
  name: TypePrior["descriptor"];
  basis: PcaBasis;
  z: Float64Array[];
}

async function texturePca(
  textureOf: (row: number) => Float32Array,
  dim: number,
  rows: readonly number[],
  pcaDims: number,
  dense: DenseKernels,
): Promise<PriorDescriptor> {
  const sample = packRows(textureOf, dim, rows);
  const basis = await fitPca(sample, dim, dense, pcaDims);
  return {
    name: "texture",
    basis,
    z: await toPca(
      basis,
      sample,
      rows.map((_, i) => i),
      dense,
    ),
  };
}

/** `rows`' descriptors packed row-major, in the order given. */
function packRows(
  textureOf: (row: number) => Float32Array,
  dim: number,
  rows: readonly number[],
): Float32Array {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => {
    out.set(textureOf(r), i * dim);
  });
  return out;
}

/** Row -> its vector in a set of training rows (embeddings or textures); null when one of `needed` is missing. */
function rowLookup(t: TrainingTextures, needed: readonly number[]): ((row: number) => Float32Array) | null {
  const at = new Map<number, number>();
  t.rowIds.forEach((r, i) => {
    at.set(r, i);
  });
  if (!needed.every((r) => at.has(r)) || t.vectors.length !== t.rowIds.length * t.dim) return null;
  return (row) => {
    const i = at.get(row) as number;
    return t.vectors.subarray(i * t.dim, (i + 1) * t.dim);
  };
}

/**
 * Cross-validates the type prior on top of the chosen projection's merged scores: per fold a discriminant
 * learned on the other folds leans each held-out row towards defect or normal, and the gallery rows of
 * each type are shifted by `beta * lean` before P@10 is counted.
 */
async function chooseTypePrior({
  settings,
  merged,
  baseline,
  passes,
  classOf,
  foldOf,
  classNames,
  defectRow,
  descriptors,
}: {
  settings: GateSettings;
  merged: Float64Array;
  baseline: CvScore;
  passes: (s: CvScore) => boolean;
  classOf: readonly number[];
  foldOf: readonly number[];
  classNames: readonly string[];
  defectRow: readonly boolean[];
  /** Built only when the prior is tried (a texture PCA is seconds on a large gallery). */
  descriptors: () => Promise<PriorDescriptor[]>;
}): Promise<{
  chosen: { descriptor: TypePrior["descriptor"]; beta: number; basis: PcaBasis; score: CvScore } | null;
  reason: string;
}> {
  const m = classOf.length;
  const defects = defectRow.filter(Boolean).length;
  if (settings.typePrior.betas.length === 0) return { chosen: null, reason: "the type prior is off" };
  if (defects < settings.folds || m - defects < settings.folds)
    return { chosen: null, reason: "the gallery does not hold both image types" };
  let best: { descriptor: TypePrior["descriptor"]; beta: number; basis: PcaBasis; score: CvScore } | null =
    null;
  const tried: string[] = [];
  const typeOf = defectRow.map((d) => (d ? 1 : 0));
  for (const desc of await descriptors()) {
    const lean = new Float64Array(m);
    const dims = desc.z[0]?.length ?? 0;
    const foldMoments = Array.from({ length: settings.folds }, (_, f) =>
      scatterMoments(
        desc.z,
        typeOf,
        dims,
        2,
        foldOf.flatMap((g, i) => (g === f ? [i] : [])),
      ),
    );
    for (let f = 0; f < settings.folds; f++) {
      const d: SubspaceDiscriminant | null = discriminantFromMoments(
        addMoments(foldMoments.filter((_, g) => g !== f)),
        settings.typePrior.shrinkage,
      );
      for (let i = 0; i < m; i++)
        if (foldOf[i] === f) lean[i] = d ? subspaceLean(d, desc.z[i] as Float64Array) : 0;
    }
    for (const beta of settings.typePrior.betas) {
      const shifted = new Float64Array(merged.length);
      for (let i = 0; i < m; i++) {
        const shift = beta * (lean[i] as number);
        for (let j = 0; j < m; j++)
          shifted[i * m + j] = (merged[i * m + j] as number) + (defectRow[j] ? shift : -shift);
      }
      const sc = score(shifted, null, classOf, foldOf, classNames, settings.folds);
      tried.push(`${desc.name} ${beta}: ${sc.p10.toFixed(3)}`);
      if (!passes(sc) || sc.p10 < baseline.p10 + settings.minGain) continue;
      if (!best || sc.p10 > best.score.p10)
        best = { descriptor: desc.name, beta, basis: desc.basis, score: sc };
    }
  }
  return best
    ? {
        chosen: best,
        reason: `cross-validation raises merged P@10 from ${baseline.p10.toFixed(3)} to ${best.score.p10.toFixed(3)} (${best.descriptor}, beta ${best.beta})`,
      }
    : {
        chosen: null,
        reason: `cross-validation found no type prior beating ${baseline.p10.toFixed(3)} by ${settings.minGain} (${tried.join(", ")})`,
      };
}

/**
 * Groups of near-duplicates: each image is joined to its nearest neighbour when their cosine is at least
 * `threshold` (a nearest-neighbour forest, so one dense class does not collapse into one group).
 * @param sims - cosine of every pair of the `n` rows (n x n, row-major).
 * @returns a group id per row.
 */
export function nearDuplicateGroups(sims: Float64Array, n: number, threshold: number): Int32Array {
  const parent = Int32Array.from({ length: n }, (_, i) => i);
  const find = (i: number): number => {
    let r = i;
    while (parent[r] !== r) r = parent[r] as number;
    return r;
  };
  if (threshold >= 1) return parent;
  for (let i = 0; i < n; i++) {
    let best = -1;
    let bestCos = threshold;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const s = sims[i * n + j] as number;
      if (s >= bestCos) {
        bestCos = s;
        best = j;
      }
    }
    if (best >= 0) parent[find(i)] = find(best);
  }
  return Int32Array.from({ length: n }, (_, i) => find(i));
}

/** Inner products of every pair of rows (n x n, row-major), float64, in `dense`. */
async function gram(v: Float32Array, width: number, dense: DenseKernels): Promise<Float64Array> {
  const n = v.length / width;
  const x = Float64Array.from(v);
  const out = await dense.gemm({ a: x, b: x, rows: n, inner: width, cols: n, transB: true });
  // Exactly symmetric, as the pairwise sums were: (i, j) and (j, i) hold one value.
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) out[j * n + i] = out[i * n + j] as number;
  return out;
}

/** The unit-length adapted parts `y = w z / |w z|` of every row (`keep` values each), from PCA coordinates. */
function whitenedRows(whitening: Whitening, z: readonly Float64Array[]): Float32Array {
  const { keep, dims, w } = whitening;
  const out = new Float32Array(z.length * keep);
  const y = new Float64Array(keep);
  z.forEach((v, i) => {
    let norm = 0;
    for (let k = 0; k < keep; k++) {
      let s = 0;
      const off = k * dims;
      for (let d = 0; d < dims; d++) s += (w[off + d] as number) * (v[d] as number);
      y[k] = s;
      norm += s * s;
    }
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let k = 0; k < keep; k++) out[i * keep + k] = (y[k] as number) * inv;
  });
  return out;
}

/**
 * Inner products between fold `f`'s rows (queries) and the other folds' rows, into `out` (n x n); the
 * product of the two row sets runs in `dense`.
 */
async function fillFoldGram(
  out: Float64Array,
  v: Float32Array,
  width: number,
  foldOf: readonly number[],
  f: number,
  dense: DenseKernels,
): Promise<void> {
  const n = foldOf.length;
  const inFold = foldOf.flatMap((g, i) => (g === f ? [i] : []));
  const others = foldOf.flatMap((g, i) => (g === f ? [] : [i]));
  const pack = (rows: number[]) => {
    const x = new Float64Array(rows.length * width);
    rows.forEach((r, i) => {
      for (let d = 0; d < width; d++) x[i * width + d] = v[r * width + d] as number;
    });
    return x;
  };
  const sims = await dense.gemm({
    a: pack(inFold),
    b: pack(others),
    rows: inFold.length,
    inner: width,
    cols: others.length,
    transB: true,
  });
  inFold.forEach((i, a) => {
    const row = a * others.length;
    others.forEach((j, b) => {
      out[i * n + j] = sims[row + b] as number;
    });
  });
}

/** Mean P@10 of every row queried against the rows of the other folds, overall and per class. */
function score(
  sims: Float64Array,
  _unused: null,
  classOf: readonly number[],
  foldOf: readonly number[],
  classNames: readonly string[],
  _folds: number,
): CvScore {
  const n = classOf.length;
  const per = classNames.map(() => ({ sum: 0, n: 0 }));
  let total = 0;
  const top = new Float64Array(10);
  const topClass = new Int32Array(10);
  for (let i = 0; i < n; i++) {
    top.fill(Number.NEGATIVE_INFINITY);
    topClass.fill(-1);
    for (let j = 0; j < n; j++) {
      if (foldOf[j] === foldOf[i]) continue;
      const s = sims[i * n + j] as number;
      if (s <= (top[9] as number)) continue;
      let k = 9;
      while (k > 0 && (top[k - 1] as number) < s) {
        top[k] = top[k - 1] as number;
        topClass[k] = topClass[k - 1] as number;
        k--;
      }
      top[k] = s;
      topClass[k] = classOf[j] as number;
    }
    let hits = 0;
    for (let k = 0; k < 10; k++) if (topClass[k] === classOf[i]) hits++;
    const p = hits / 10;
    total += p;
    const c = per[classOf[i] as number];
    if (c) {
      c.sum += p;
      c.n++;
    }
  }
  return {
    p10: total / n,
    perClass: classNames.map((label, i) => ({
      label,
      images: per[i]?.n ?? 0,
      p10: (per[i]?.n ?? 0) > 0 ? (per[i]?.sum ?? 0) / (per[i]?.n ?? 1) : 0,
    })),
  };
}

export type { PcaBasis };
