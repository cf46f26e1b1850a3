import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config/config.js";
import { createEmbedder, type Embedder } from "../src/embedding/embedder.service.js";
import { loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { sha256File } from "../src/embedding/model.file.js";
import { isDomainError } from "../src/shared/errors.js";
import { datasetImage, pngBomb } from "./support/images.js";
import { MODELS_DIR } from "./support/services.js";

const cosine = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * (b[i] as number), 0);

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isDomainError(e) ? e.code : `not a domain error: ${(e as Error).message}`;
  }
}

describe.each([
  ["mobilenetv2-12-int8", 1280],
  ["squeezenet1.1", 512],
])("embedding with the real %s model", (preset, dimension) => {
  let embedder: Embedder;
  beforeAll(async () => {
    const config = loadConfig({ MODELS_DIR, MODEL_PRESET: preset });
    const model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
    embedder = createEmbedder({
      model,
      modelConfig: config.model,
      limits: { maxBytes: 10_000_000, maxPixels: 40_000_000 },
    });
  });

  it(`gives an L2-normalised ${dimension}-d vector, the same for the same bytes`, async () => {
    const bytes = await datasetImage("neu_det/steel_strip_neu/scratches/scratches_1.jpg");
    const a = await embedder.embedOne(bytes);
    const b = await embedder.embedOne(bytes);
    expect(a.embedding).toHaveLength(dimension);
    expect(cosine(a.embedding, a.embedding)).toBeCloseTo(1, 4);
    expect(Array.from(a.embedding)).toEqual(Array.from(b.embedding));
    expect(a.info).toMatchObject({ format: "jpeg", width: 200, height: 200 });
  });

  it("places two images of one defect type closer than images of another", async () => {
    const [s1, s2, c1] = await embedder.embedMany(
      await Promise.all([
        datasetImage("neu_det/steel_strip_neu/scratches/scratches_1.jpg"),
        datasetImage("neu_det/steel_strip_neu/scratches/scratches_2.jpg"),
        datasetImage("neu_det/steel_strip_neu/patches/patches_1.jpg"),
      ]),
    );
    if (!s1?.ok || !s2?.ok || !c1?.ok) throw new Error("embedding failed");
    expect(cosine(s1.embedding, s2.embedding)).toBeGreaterThan(cosine(s1.embedding, c1.embedding));
  });

  it("embeds a batch exactly as it embeds images one by one", async () => {
    const bytes = await datasetImage("xsdd/steel_strip_xsdd/red_iron/2078.jpg");
    const [batched] = await embedder.embedMany([
      bytes,
      await datasetImage("neu_det/steel_strip_neu/patches/patches_1.jpg"),
    ]);
    const single = await embedder.embedOne(bytes);
    if (!batched?.ok) throw new Error("embedding failed");
    expect(cosine(batched.embedding, single.embedding)).toBeCloseTo(1, 4);
  });
});

describe("bad images", () => {
  let embedder: Embedder;
  beforeAll(async () => {
    const config = loadConfig({ MODELS_DIR });
    const model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
    embedder = createEmbedder({
      model,
      modelConfig: config.model,
      limits: { maxBytes: 100_000, maxPixels: 40_000_000 },
    });
  });

  it("refuses bytes that are not an image", async () => {
    expect(await codeOf(embedder.embedOne(Buffer.from("this is a text file, not a photo")))).toBe(
      "INVALID_IMAGE_FORMAT",
    );
  });

  it("refuses a truncated JPEG", async () => {
    const bytes = await datasetImage("neu_det/steel_strip_neu/crazing/crazing_1.jpg");
    expect(await codeOf(embedder.embedOne(bytes.subarray(0, Math.floor(bytes.length / 2))))).toBe(
      "INVALID_IMAGE_FORMAT",
    );
  });

  it("refuses a decompression bomb from its header, without decoding it", async () => {
    const bomb = pngBomb();
    expect(bomb.length).toBeLessThan(10_000);
    expect(await codeOf(embedder.embedOne(bomb))).toBe("IMAGE_TOO_LARGE");
  });

  it("refuses an image over the byte limit", async () => {
    expect(await codeOf(embedder.embedOne(Buffer.alloc(100_001, 0xff)))).toBe("IMAGE_TOO_LARGE");
  });

  it("fails one bad image of a batch without failing the others", async () => {
    const good = await datasetImage("neu_det/steel_strip_neu/crazing/crazing_1.jpg");
    const outcomes = await embedder.embedMany([good, Buffer.from("nope"), good]);
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, true]);
  });

  it("reports FEATURE_EXTRACTION_FAILED when the model cannot take the configured input size", async () => {
    const config = loadConfig({ MODELS_DIR, MODEL_INPUT_SIZE: "160", MODEL_RESIZE_SIZE: "160" });
    const model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
    const wrong = createEmbedder({
      model,
      modelConfig: config.model,
      limits: { maxBytes: 1e7, maxPixels: 4e7 },
    });
    const bytes = await datasetImage("neu_det/steel_strip_neu/crazing/crazing_1.jpg");
    expect(await codeOf(wrong.embedOne(bytes))).toBe("FEATURE_EXTRACTION_FAILED");
  });
});
