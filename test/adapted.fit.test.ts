import { readFile } from "node:fs/promises";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import { decideAdaptation } from "../src/adapted/cross-validation.js";
import { parseProjection } from "../src/adapted/projection.file.js";
import type { Projection } from "../src/adapted/projection.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { REPO_ROOT, SAMPLE_DIR } from "./support/services.js";

const FIXTURES = path.join(REPO_ROOT, "test", "fixtures");

/**
 * The fit of the adapted space on the shipped sample gallery against what the earlier implementation
 * (eigen-decompositions of dims x dims per fold) decided and fitted on the same inputs. The inputs (the
 * sample's embeddings and texture descriptors) are stored with the reference: the int8 model's embeddings
 * differ between CPUs, and the fit must be compared on identical inputs.
 */
describe("adapted-space fit on the shipped sample gallery", () => {
  let result: Awaited<ReturnType<typeof decideAdaptation>>;
  let reference: {
    decision: Awaited<ReturnType<typeof decideAdaptation>>["decision"];
    projection: Projection;
  };

  beforeAll(async () => {
    const fixture = JSON.parse(await readFile(path.join(FIXTURES, "sample-gallery-fit.json"), "utf8"));
    reference = {
      decision: fixture.decision,
      projection: parseProjection(JSON.stringify(fixture.projection)),
    };
    const input = fixture.input as {
      file: string;
      n: number;
      dim: number;
      textureDim: number;
      images: string[];
      labels: string[];
      isDefect: boolean[];
    };
    // The stored rows are the sample's images as they ship, in the reader's order.
    const images = await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") });
    expect(images.map((i) => i.relPath)).toEqual(input.images);
    const raw = gunzipSync(await readFile(path.join(FIXTURES, input.file)));
    const all = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    expect(all.length).toBe(input.n * (input.dim + input.textureDim));
    const vectors = all.slice(0, input.n * input.dim);
    const textures = all.slice(input.n * input.dim);
    result = await decideAdaptation({
      vectors,
      dim: input.dim,
      labels: images.map((i) => `${i.productCode}/${i.defectCode ?? "normal"}`),
      isDefect: images.map((i) => i.imageType === "defect"),
      textures: { dim: input.textureDim, rowIds: Int32Array.from(images.keys()), vectors: textures },
    });
  }, 120_000);

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
