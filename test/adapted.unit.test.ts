import { describe, expect, it } from "vitest";
import { DEFAULT_GATE, decideAdaptation, trainingRowIds } from "../src/adapted/cross-validation.js";
import { parseProjection, serializeProjection } from "../src/adapted/projection.file.js";
import { adaptVector } from "../src/adapted/projection.js";
import { fitDiscriminant, type TypePrior, typeLean } from "../src/adapted/type-prior.js";
import type { GalleryEntry } from "../src/index/gallery-entry.js";
import { suggestDefectType } from "../src/search/defect-suggestion.js";
import { expandQuery, mergeByType } from "../src/search/search.service.js";

/** Deterministic pseudo-random numbers in [-0.5, 0.5). */
function rng(seed: number) {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff - 0.5;
  };
}

/**
 * A labelled gallery of `perClass` vectors per class in `dim` dimensions: each class differs from the
 * others by `signal` along its own axis; every vector carries nuisance noise of `noise` in all dimensions.
 */
function gallery({ classes, perClass, dim, signal, noise, seed, nuisance = 0 }: Record<string, number>) {
  const r = rng(seed as number);
  const n = (classes as number) * (perClass as number);
  const vectors = new Float32Array(n * (dim as number));
  const labels: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % (classes as number);
    labels.push(`p/c${c}`);
    const v = vectors.subarray(i * (dim as number), (i + 1) * (dim as number));
    for (let d = 0; d < (dim as number); d++) v[d] = (noise as number) * r();
    // Strong variation shared by every class (lighting, texture), in dims 8-15.
    for (let d = 8; d < 16; d++) v[d] = (v[d] as number) + nuisance * r();
    v[c] = (v[c] as number) + (signal as number);
    // A shared offset, so cosine without centring sees every class alike.
    v[(dim as number) - 1] = (v[(dim as number) - 1] as number) + 3;
    let norm = 0;
    for (const x of v) norm += x * x;
    for (let d = 0; d < v.length; d++) v[d] = (v[d] as number) / Math.sqrt(norm);
  }
  return { vectors, labels, dim: dim as number };
}

const gate = { ...DEFAULT_GATE, pcaDims: 32, candidates: DEFAULT_GATE.candidates.slice(0, 2) };

describe("cross-validation gate of the adapted space", () => {
  it("refuses a projection on a gallery where raw is already right (nothing to gain)", async () => {
    // Classes far apart: raw cosine ranks every class perfectly, so no projection can beat it.
    const g = gallery({ classes: 4, perClass: 30, dim: 24, signal: 3, noise: 0.2, seed: 1 });
    const { decision, projection } = await decideAdaptation({ ...g, settings: gate });
    expect(decision.raw?.p10).toBe(1);
    expect(decision.space).toBe("raw");
    expect(projection).toBeNull();
    expect(decision.reason).toMatch(/keeps raw/);
  });

  it("refuses a projection when the labels carry no information the embedding can learn", async () => {
    // Labels assigned at random: cross-validation shows no gain on held-out folds.
    const g = gallery({ classes: 1, perClass: 120, dim: 24, signal: 0, noise: 1, seed: 2 });
    const r = rng(3);
    const labels = g.labels.map(() => `p/c${Math.floor((r() + 0.5) * 4)}`);
    const { decision } = await decideAdaptation({ vectors: g.vectors, dim: g.dim, labels, settings: gate });
    expect(decision.space).toBe("raw");
  });

  it("keeps small galleries raw and says why", async () => {
    const g = gallery({ classes: 2, perClass: 10, dim: 8, signal: 1, noise: 1, seed: 4 });
    const { decision } = await decideAdaptation({ ...g, settings: gate });
    expect(decision.space).toBe("raw");
    expect(decision.reason).toMatch(/too small/);
  });

  it("accepts a projection when the classes differ along weak directions drowned by nuisance", async () => {
    // The class signal (0.5) is small next to the nuisance spread (6, in 8 dims shared by every class):
    // raw cosine mixes the classes, whitening by the within-class covariance separates them.
    const g = gallery({ classes: 4, perClass: 40, dim: 24, signal: 0.5, noise: 0.3, nuisance: 6, seed: 5 });
    const { decision, projection } = await decideAdaptation({ ...g, settings: gate });
    expect(decision.space).toBe("adapted");
    expect(decision.best?.p10 ?? 0).toBeGreaterThan((decision.raw?.p10 ?? 1) + 0.1);
    expect(projection?.outDim).toBe(3);
  });
});

describe("projection file", () => {
  it("round-trips exactly: the reloaded projection maps a vector to the same bits", async () => {
    const g = gallery({ classes: 4, perClass: 40, dim: 24, signal: 0.5, noise: 0.3, nuisance: 6, seed: 5 });
    const { projection } = await decideAdaptation({ ...g, settings: gate });
    if (!projection) throw new Error("expected a projection");
    const again = parseProjection(serializeProjection(projection));
    const x = g.vectors.subarray(0, g.dim);
    expect(Array.from(adaptVector(again, x))).toEqual(Array.from(adaptVector(projection, x)));
  });

  it("rejects a file whose arrays do not match its dimensions", () => {
    const text = JSON.stringify({
      formatVersion: 1,
      inDim: 4,
      outDim: 2,
      blend: 1,
      shrinkage: 0.1,
      scope: "all",
      mean: Buffer.from(new Float32Array(4).buffer).toString("base64"),
      matrix: Buffer.from(new Float32Array(3).buffer).toString("base64"),
    });
    expect(() => parseProjection(text)).toThrow(/do not match/);
  });
});

describe("defect-type suggestion", () => {
  const hit = (defectCode: string | null, score: number) => ({
    productCode: "tile",
    defectCode,
    defectName: defectCode,
    score,
  });

  it("weights votes by similarity: two close cracks outvote three distant blowholes", () => {
    const s = suggestDefectType(
      [
        hit("crack", 0.9),
        hit("crack", 0.85),
        hit("blowhole", 0.3),
        hit("blowhole", 0.3),
        hit("blowhole", 0.3),
      ],
      5,
    );
    expect(s).toMatchObject({ defectCode: "crack", votes: 5 });
    expect(s?.share).toBeCloseTo(1.75 / 2.65, 5);
  });

  it("counts only the top k hits, says normal with a null defect code, and is null without hits", () => {
    const s = suggestDefectType([hit(null, 0.8), hit(null, 0.7), hit("crack", 0.9), hit("crack", 0.9)], 2);
    expect(s).toMatchObject({ defectCode: null, votes: 2, share: 1 });
    expect(suggestDefectType([], 10)).toBeNull();
  });

  it("breaks a tie by the better-ranked hit", () => {
    expect(suggestDefectType([hit("fray", 0.5), hit("crack", 0.5)], 10)?.defectCode).toBe("fray");
  });
});

/**
 * A gallery of normal images and two defect types where the embedding cannot tell a defect from a normal
 * image (each normal image looks like one of the defect types, as a tile looks like its cracked twin), while
 * the defect types differ from each other along a weak direction drowned by nuisance. `typeSignal` is how
 * strongly the separate texture descriptor tells defect from normal (0: not at all).
 */
function mixedGallery(typeSignal: number, seed: number) {
  const r = rng(seed);
  const dim = 24;
  const tdim = 12;
  const n = 240;
  const vectors = new Float32Array(n * dim);
  const textures = new Float32Array(n * tdim);
  const labels: string[] = [];
  const isDefect: boolean[] = [];
  const unit = (v: Float32Array) => {
    let norm = 0;
    for (const x of v) norm += x * x;
    for (let d = 0; d < v.length; d++) v[d] = (v[d] as number) / Math.sqrt(norm);
  };
  for (let i = 0; i < n; i++) {
    // 160 normal, 40 + 40 defect; normal image i looks like defect type i mod 2.
    const defect = i >= 160;
    const look = i % 2;
    labels.push(defect ? `p/d${look}` : "p/normal");
    isDefect.push(defect);
    const v = vectors.subarray(i * dim, (i + 1) * dim);
    for (let d = 0; d < dim; d++) v[d] = 0.3 * r();
    for (let d = 8; d < 16; d++) v[d] = (v[d] as number) + 6 * r();
    v[look] = (v[look] as number) + 0.5;
    v[dim - 1] = (v[dim - 1] as number) + 3;
    unit(v);
    const t = textures.subarray(i * tdim, (i + 1) * tdim);
    for (let d = 0; d < tdim; d++) t[d] = r();
    t[0] = (t[0] as number) + (defect ? typeSignal : 0);
    t[tdim - 1] = (t[tdim - 1] as number) + 2;
    unit(t);
  }
  return {
    vectors,
    dim,
    labels,
    isDefect,
    textures: { vectors: textures, dim: tdim, rowIds: Int32Array.from({ length: n }, (_, i) => i) },
  };
}

const priorGate = { ...gate, candidates: [{ shrinkage: 0.05, blend: 1, scope: "all" as const }] };

describe("type prior for searches of both image types", () => {
  it("is chosen from the texture descriptor when only the texture tells defect from normal", async () => {
    const g = mixedGallery(1.5, 7);
    const { decision, projection } = await decideAdaptation({ ...g, settings: priorGate });
    expect(decision.space).toBe("adapted");
    expect(decision.typePrior?.descriptor).toBe("texture");
    expect(decision.typePrior?.p10 ?? 0).toBeGreaterThan((decision.best?.p10 ?? 1) + 0.05);
    expect(decision.typePriorReason).toMatch(/raises merged P@10/);
    const prior = projection?.typePrior;
    if (!prior) throw new Error("expected a type prior");
    // It leans a defect image's texture towards defect and a normal one's towards normal.
    const lean = (i: number) =>
      typeLean(prior, g.textures.vectors.subarray(i * g.textures.dim, (i + 1) * g.textures.dim));
    const defects = Array.from({ length: 80 }, (_, k) => lean(160 + k));
    const normals = Array.from({ length: 160 }, (_, k) => lean(k));
    expect(defects.filter((x) => x > 0).length).toBeGreaterThan(70);
    expect(normals.filter((x) => x < 0).length).toBeGreaterThan(140);
    // It survives the projection file, bit for bit.
    const again = parseProjection(serializeProjection(projection));
    expect(again.typePrior && lean(0) === typeLean(again.typePrior, g.textures.vectors.subarray(0, 12))).toBe(
      true,
    );
  });

  it("is refused when neither descriptor tells defect from normal, and says what it tried", async () => {
    // The same embeddings as above (same seed); only the texture lost its type signal.
    const g = mixedGallery(0, 7);
    const { decision, projection } = await decideAdaptation({ ...g, settings: priorGate });
    expect(decision.typePrior).toBeNull();
    expect(projection?.typePrior).toBeUndefined();
    expect(decision.typePriorReason).toMatch(/no type prior .*texture 0\.1/);
  });

  it("decides the same from the embeddings of its training rows alone as from the whole gallery", async () => {
    // 21,000 images: more than the final fit's 20,000-row sample, so some rows are never read.
    const g = gallery({ classes: 4, perClass: 5250, dim: 24, signal: 0.5, noise: 0.3, nuisance: 6, seed: 9 });
    const settings = {
      ...gate,
      candidates: gate.candidates.slice(0, 1),
      typePrior: { betas: [], shrinkage: 0.05 },
    };
    const rowIds = Int32Array.from(trainingRowIds(g.labels.length, settings));
    expect(rowIds.length).toBeLessThan(g.labels.length);
    const compact = new Float32Array(rowIds.length * g.dim);
    rowIds.forEach((r, i) => {
      compact.set(g.vectors.subarray(r * g.dim, (r + 1) * g.dim), i * g.dim);
    });
    const whole = await decideAdaptation({ ...g, settings });
    const sampled = await decideAdaptation({
      vectors: compact,
      rowIds,
      dim: g.dim,
      labels: g.labels,
      settings,
    });
    expect(sampled.decision.space).toBe("adapted");
    expect(sampled.decision.best?.p10).toBe(whole.decision.best?.p10);
    expect(Array.from(sampled.projection?.matrix ?? [])).toEqual(Array.from(whole.projection?.matrix ?? [0]));
  }, 60_000);

  it("asks for the texture descriptors of a bounded sample of a large gallery only", () => {
    expect(trainingRowIds(7)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const big = trainingRowIds(1_000_000);
    // The final fit's 20,000 evenly spaced rows and the cross-validation's 4,000 (mostly the same).
    expect(big.length).toBeGreaterThanOrEqual(20_000);
    expect(big.length).toBeLessThanOrEqual(24_000);
    expect(big.every((r, i) => i === 0 || r > (big[i - 1] as number))).toBe(true);
    expect(big[big.length - 1]).toBeLessThan(1_000_000);
  });

  it("is not tried on a gallery of one image type", async () => {
    const g = gallery({ classes: 4, perClass: 40, dim: 24, signal: 0.5, noise: 0.3, nuisance: 6, seed: 5 });
    const { decision } = await decideAdaptation({ ...g, settings: gate });
    expect(decision.space).toBe("adapted");
    expect(decision.typePriorReason).toMatch(/both image types/);
  });
});

describe("one ranking of both image types", () => {
  const match = (imageId: number, score: number) => ({
    entry: { imageId } as GalleryEntry,
    score,
  });
  const prior: TypePrior = {
    descriptor: "embedding",
    inDim: 2,
    mean: new Float32Array([0, 0]),
    weights: new Float32Array([1, 0]),
    bias: 0,
    scale: 0.1,
    beta: 0.2,
  };
  const searched = [
    {
      imageType: "defect" as const,
      matches: [match(1, 0.7), match(2, 0.6)],
      indexSize: 2,
      space: "adapted" as const,
    },
    {
      imageType: "normal" as const,
      matches: [match(3, 0.8), match(4, 0.75)],
      indexSize: 2,
      space: "raw" as const,
    },
  ];

  it("merges by similarity without a prior", () => {
    const r = mergeByType(searched, null, { embedding: new Float32Array([1, 0]), texture: null }, 4);
    expect(r.matches.map((m) => m.entry.imageId)).toEqual([3, 4, 1, 2]);
    expect(r.indexSize).toBe(4);
    expect(r.space).toBe("adapted");
  });

  it("ranks the type the query leans to first, and reports the similarities unchanged", () => {
    const towardsDefect = mergeByType(
      searched,
      prior,
      { embedding: new Float32Array([1, 0]), texture: null },
      3,
    );
    expect(towardsDefect.matches.map((m) => m.entry.imageId)).toEqual([1, 2, 3]);
    expect(towardsDefect.matches.map((m) => m.score)).toEqual([0.7, 0.6, 0.8]);
    expect(towardsDefect.matches.map((m) => m.space)).toEqual(["adapted", "adapted", "raw"]);
    const towardsNormal = mergeByType(
      searched,
      prior,
      { embedding: new Float32Array([-1, 0]), texture: null },
      4,
    );
    expect(towardsNormal.matches.map((m) => m.entry.imageId)).toEqual([3, 4, 1, 2]);
    // A texture prior without the query's texture (a model without one) leaves the merge by similarity.
    const noTexture = mergeByType(
      searched,
      { ...prior, descriptor: "texture" },
      { embedding: new Float32Array([1, 0]), texture: null },
      4,
    );
    expect(noTexture.matches.map((m) => m.entry.imageId)).toEqual([3, 4, 1, 2]);
    // Nor does a prior when the defect index answered in the raw space it was not learned on.
    const rawDefect = searched.map((x) => ({ ...x, space: "raw" as const }));
    const notLearned = mergeByType(
      rawDefect,
      prior,
      { embedding: new Float32Array([1, 0]), texture: null },
      4,
    );
    expect(notLearned.matches.map((m) => m.entry.imageId)).toEqual([3, 4, 1, 2]);
  });

  it("learns no discriminant from a degenerate scatter", () => {
    const same = Array.from({ length: 6 }, () => Float64Array.from([1, 2, 3]));
    expect(fitDiscriminant(same, [true, true, true, false, false, false], 0)).toBeNull();
    expect(fitDiscriminant(same.slice(0, 3), [true, true, true], 0.05)).toBeNull();
  });
});

describe("alpha-QE", () => {
  it("adds each hit weighted by its similarity to the power alpha, and re-normalises", () => {
    const q = new Float32Array([1, 0]);
    const out = expandQuery(q, [{ vector: new Float32Array([0, 1]), score: 0.5 }], 3);
    // q + 0.125 (0, 1), normalised.
    const n = Math.hypot(1, 0.125);
    expect(out[0]).toBeCloseTo(1 / n, 6);
    expect(out[1]).toBeCloseTo(0.125 / n, 6);
    // Negative similarities weigh nothing; alpha 0 is a plain average.
    expect(Array.from(expandQuery(q, [{ vector: new Float32Array([0, 1]), score: -0.4 }], 3))).toEqual([
      1, 0,
    ]);
    const avg = expandQuery(q, [{ vector: new Float32Array([0, 1]), score: 0.2 }], 0);
    expect(avg[0]).toBeCloseTo(Math.SQRT1_2, 6);
  });
});
