import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decideAdaptation } from "../src/adapted/cross-validation.js";
import { parseProjection } from "../src/adapted/projection.file.js";
import type { Projection } from "../src/adapted/projection.js";
import { loadConfig } from "../src/config/config.js";
import { createEmbedder } from "../src/embedding/embedder.service.js";
import { type EmbeddingModel, loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { sha256File } from "../src/embedding/model.file.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { MODELS_DIR, REPO_ROOT, SAMPLE_DIR } from "./support/services.js";

/**
 * The fit of the adapted space on the shipped sample gallery against what the earlier implementation
 * (eigen-decompositions of dims x dims per fold) decided and fitted on the same images: written by
 * `bench/fit.ts --save` before the moments-based fit replaced it.
 */
describe("adapted-space fit on the shipped sample gallery", () => {
  let model: EmbeddingModel;
  let result: Awaited<ReturnType<typeof decideAdaptation>>;
  let reference: {
    decision: Awaited<ReturnType<typeof decideAdaptation>>["decision"];
    projection: Projection;
  };

  beforeAll(async () => {
    const fixture = JSON.parse(
      await readFile(path.join(REPO_ROOT, "test", "fixtures", "sample-gallery-fit.json"), "utf8"),
    );
    reference = {
      decision: fixture.decision,
      projection: parseProjection(JSON.stringify(fixture.projection)),
    };
    const config = loadConfig({ MODELS_DIR, MODEL_PRESET: "mobilenetv2-12-int8" });
    model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
    const embedder = createEmbedder({
      model,
      modelConfig: config.model,
      limits: { maxBytes: 50e6, maxPixels: 1e8, minSide: 8 },
    });
    const images = await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") });
    const outcomes = await embedder.embedMany(await Promise.all(images.map((i) => readFile(i.path))));
    const dim = embedder.dimension;
    const td = embedder.textureDimension;
    const vectors = new Float32Array(images.length * dim);
    const textures = new Float32Array(images.length * td);
    outcomes.forEach((o, i) => {
      if (!o.ok) throw o.error;
      vectors.set(o.embedding, i * dim);
      if (o.texture) textures.set(o.texture, i * td);
    });
    result = await decideAdaptation({
      vectors,
      dim,
      labels: images.map((i) => `${i.productCode}/${i.defectCode ?? "normal"}`),
      isDefect: images.map((i) => i.imageType === "defect"),
      textures: { dim: td, rowIds: Int32Array.from(images.keys()), vectors: textures },
    });
  }, 120_000);

  afterAll(async () => {
    await model?.close();
  });

  it("makes the same decision, with the same cross-validated figures per class", () => {
    const { decision } = result;
    const ref = reference.decision;
    expect(decision.space).toBe(ref.space);
    expect(decision.reason).toBe(ref.reason);
    expect(decision.typePriorReason).toBe(ref.typePriorReason);
    expect(decision.best?.params).toEqual(ref.best?.params);
    expect(decision.raw?.p10).toBeCloseTo(ref.raw?.p10 ?? Number.NaN, 9);
    expect(decision.best?.p10).toBeCloseTo(ref.best?.p10 ?? Number.NaN, 9);
    expect(decision.best?.perClass.map((c) => [c.label, c.images])).toEqual(
      ref.best?.perClass.map((c) => [c.label, c.images]),
    );
    decision.best?.perClass.forEach((c, i) => {
      expect(c.p10).toBeCloseTo(ref.best?.perClass[i]?.p10 ?? Number.NaN, 9);
    });
  });

  it("fits the same projection: each axis equal up to its sign (which no inner product sees)", () => {
    const p = result.projection as Projection;
    const ref = reference.projection;
    expect(p).not.toBeNull();
    expect([p.inDim, p.outDim, p.blend, p.shrinkage, p.scope]).toEqual([
      ref.inDim,
      ref.outDim,
      ref.blend,
      ref.shrinkage,
      ref.scope,
    ]);
    const largest = ref.matrix.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (let k = 0; k < p.outDim; k++) {
      const row = p.matrix.subarray(k * p.inDim, (k + 1) * p.inDim);
      const refRow = ref.matrix.subarray(k * p.inDim, (k + 1) * p.inDim);
      const sign = row.reduce((s, v, d) => s + v * (refRow[d] as number), 0) >= 0 ? 1 : -1;
      const worst = row.reduce((m, v, d) => Math.max(m, Math.abs(sign * v - (refRow[d] as number))), 0);
      expect(worst / largest).toBeLessThan(1e-3);
    }
    const meanGap = p.mean.reduce((m, v, d) => Math.max(m, Math.abs(v - (ref.mean[d] as number))), 0);
    expect(meanGap).toBeLessThan(1e-5);
  });
});
