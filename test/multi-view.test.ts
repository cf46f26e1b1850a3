import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { createEmbedder, type Embedder } from "../src/embedding/embedder.service.js";
import { type EmbeddingModel, loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { inspectImage, preprocessImage, preprocessViews } from "../src/embedding/image.decoder.js";
import { sha256File } from "../src/embedding/model.file.js";
import type { ModelInput } from "../src/embedding/model-input.js";
import { poolViews, tileOrigins, viewCount } from "../src/embedding/multi-view.js";
import { sampleImage } from "./support/images.js";
import { SHIPPED_MODELS_DIR as MODELS_DIR } from "./support/services.js";

const cosine = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * (b[i] as number), 0);

describe("multi-view tiling and pooling", () => {
  it("spreads the tiles evenly, first at 0 and last flush with the far edge", () => {
    expect(tileOrigins({ grid: 2, size: 384, tile: 224 })).toEqual([0, 160]);
    expect(tileOrigins({ grid: 3, size: 448, tile: 224 })).toEqual([0, 112, 224]);
    expect(tileOrigins({ grid: 2, size: 448, tile: 224 })).toEqual([0, 224]);
    expect(() => tileOrigins({ grid: 2, size: 500, tile: 224 })).toThrow(/cannot cover/);
    expect(viewCount({ grid: 1, size: 224, pool: "mean" })).toBe(1);
    expect(viewCount({ grid: 2, size: 384, pool: "mean" })).toBe(5);
    expect(viewCount({ grid: 3, size: 448, pool: "mean" })).toBe(10);
  });

  it("pools unit views into a unit vector: mean averages, gem leans towards the strongest view", () => {
    const a = Float32Array.from([1, 0]);
    const b = Float32Array.from([0.6, 0.8]);
    const mean = poolViews([a, b], "mean") as Float32Array;
    const gem = poolViews([a, b], "gem") as Float32Array;
    expect(Math.hypot(...mean)).toBeCloseTo(1, 6);
    const ratio = (v: Float32Array) => (v[0] as number) / (v[1] as number);
    expect(ratio(mean)).toBeCloseTo(1.6 / 0.8, 5);
    // (mean(x^3))^(1/3) per dimension: (1.216 / 2)^(1/3) and (0.512 / 2)^(1/3).
    expect(ratio(gem)).toBeCloseTo((1.216 / 2) ** (1 / 3) / (0.512 / 2) ** (1 / 3), 5);
    expect(poolViews([Float32Array.from([0, 0])], "mean")).toBeNull();
  });

  it("refuses a tile size the grid cannot cover, at startup", () => {
    expect(() => loadConfig({ MODELS_DIR, MULTI_VIEW_GRID: "2", MULTI_VIEW_SIZE: "500" })).toThrow(
      ConfigError,
    );
    expect(() => loadConfig({ MODELS_DIR, MULTI_VIEW_GRID: "2", MULTI_VIEW_SIZE: "200" })).toThrow(
      /MULTI_VIEW_SIZE/,
    );
  });
});

describe("multi-view embeddings with the real model", () => {
  const single = loadConfig({ MODELS_DIR });
  const multi = loadConfig({ MODELS_DIR, MULTI_VIEW_GRID: "2", MULTI_VIEW_SIZE: "448" });
  let singleModel: EmbeddingModel;
  let multiModel: EmbeddingModel;
  let embedder: Embedder;
  beforeAll(async () => {
    const sha = await sha256File(single.model.path);
    singleModel = await loadEmbeddingModel(single.model, sha);
    multiModel = await loadEmbeddingModel(multi.model, sha);
    embedder = createEmbedder({
      model: multiModel,
      modelConfig: multi.model,
      limits: { maxBytes: 10_000_000, maxPixels: 40_000_000 },
    });
  });
  afterAll(async () => {
    await singleModel?.close();
    await multiModel?.close();
  });

  it("gives multi-view settings and resize modes their own model id, and leaves the crop id as it was", async () => {
    const gem = loadConfig({
      MODELS_DIR,
      MULTI_VIEW_GRID: "2",
      MULTI_VIEW_SIZE: "448",
      MULTI_VIEW_POOL: "gem",
    });
    const gemModel = await loadEmbeddingModel(gem.model, await sha256File(gem.model.path));
    await gemModel.close();
    const crop = loadConfig({ MODELS_DIR, MODEL_RESIZE_MODE: "crop" });
    const cropModel = await loadEmbeddingModel(crop.model, await sha256File(crop.model.path));
    await cropModel.close();
    // The single-view id of the shipped model before multi-view and resize modes existed
    // (docs/evaluation.md): the crop preprocessing keeps it; fill, the default now, has its own.
    expect(cropModel.modelId).toBe("mobilenetv2-12-int8@025ec4d51a07.e5fa50");
    expect(singleModel.modelId).not.toBe(cropModel.modelId);
    expect(multiModel.modelId).not.toBe(singleModel.modelId);
    expect(gemModel.modelId).not.toBe(multiModel.modelId);
    expect(multiModel.modelId.startsWith("mobilenetv2-12-int8@025ec4d51a07.")).toBe(true);
  });

  it("cuts the whole image and then 2 x 2 tiles, row by row, from the larger resize", async () => {
    // 448 x 448 quadrants: red, green / blue, white. With grid 2 at 448 each tile is one quadrant.
    const quad = (r: number, g: number, b: number) => ({
      input: { create: { width: 224, height: 224, channels: 3 as const, background: { r, g, b } } },
    });
    const bytes = await sharp({ create: { width: 448, height: 448, channels: 3, background: "black" } })
      .composite([
        { ...quad(255, 0, 0), left: 0, top: 0 },
        { ...quad(0, 255, 0), left: 224, top: 0 },
        { ...quad(0, 0, 255), left: 0, top: 224 },
        { ...quad(255, 255, 255), left: 224, top: 224 },
      ])
      .png()
      .toBuffer();
    const info = await inspectImage(bytes, { maxBytes: 1e8, maxPixels: 1e8 });
    const views = await preprocessViews(bytes, info, multi.model);
    expect(views).toHaveLength(5);
    expect(Array.from(views[0] as ModelInput)).toEqual(
      Array.from(await preprocessImage(bytes, info, multi.model)),
    );
    // Centre pixel of each tile.
    const rgb = (t: ModelInput) => Array.from(t.subarray((112 * 224 + 112) * 3, (112 * 224 + 112) * 3 + 3));
    expect(views.slice(1).map((v) => rgb(v))).toEqual([
      [255, 0, 0],
      [0, 255, 0],
      [0, 0, 255],
      [255, 255, 255],
    ]);
    // Single-view settings give the whole image only.
    expect(await preprocessViews(bytes, info, single.model)).toHaveLength(1);
  });

  it("embeds one image as the mean of its five view embeddings, the same in a batch as alone", async () => {
    const bytes = await sampleImage("gallery/steel_strip_xsdd/surface_scratch/4001.jpg");
    const info = await inspectImage(bytes, { maxBytes: 1e8, maxPixels: 1e8 });
    const views = await singleModel.embed(await preprocessViews(bytes, info, multi.model));
    const expected = poolViews(views, "mean") as Float32Array;
    const one = await embedder.embedOne(bytes);
    expect(embedder.viewsPerImage).toBe(5);
    expect(one.embedding).toHaveLength(1280);
    expect(cosine(one.embedding, expected)).toBeCloseTo(1, 5);
    // Differs from the whole-image embedding: the tiles count.
    expect(cosine(one.embedding, views[0] as Float32Array)).toBeLessThan(0.999);
    const other = await sampleImage("gallery/steel_strip_xsdd/red_iron/2001.jpg");
    const batch = await embedder.embedMany([other, bytes, other, bytes]);
    const second = batch[1];
    if (!second?.ok) throw new Error("embedding failed");
    expect(cosine(second.embedding, one.embedding)).toBeCloseTo(1, 4);
    expect(batch.every((b) => b.ok)).toBe(true);
  });
});
