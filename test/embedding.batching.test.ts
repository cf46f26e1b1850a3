import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config/config.js";
import { createEmbedder } from "../src/embedding/embedder.service.js";
import { type EmbeddingModel, loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { inspectImage, preprocessImage } from "../src/embedding/image.decoder.js";
import { sha256File } from "../src/embedding/model.file.js";
import type { ModelInput } from "../src/embedding/model-input.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { isDomainError } from "../src/shared/errors.js";
import { firstPerClass } from "./support/images.js";
import { MODELS_DIR, SAMPLE_DIR } from "./support/services.js";

const limits = { maxBytes: 20e6, maxPixels: 50e6, minSide: 8 };
const maxGap = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] ?? 0))), 0);

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isDomainError(e) ? e.code : `not a domain error: ${(e as Error).message}`;
  }
}

describe("dynamic batching of concurrent queries in the inference worker (real model, real images)", () => {
  const config = loadConfig({ MODELS_DIR, INFERENCE_MAX_BATCH: "8", INFERENCE_MAX_QUEUE_DELAY_US: "0" });
  let model: EmbeddingModel;
  let images: Buffer[];
  let tensors: ModelInput[];
  /** Each image embedded alone, one call after the other: the reference. */
  let alone: Float32Array[];

  beforeAll(async () => {
    model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
    // Seven different defect types of the shipped sample: seven different images.
    const picked = firstPerClass(await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") }), 1);
    images = await Promise.all(picked.map((p) => readFile(p.path)));
    tensors = await Promise.all(
      images.map(async (b) => preprocessImage(b, await inspectImage(b, limits), config.model)),
    );
    alone = [];
    for (const t of tensors) {
      const before = model.runStats.runs;
      alone.push(((await model.embed([t])) as Float32Array[])[0] as Float32Array);
      expect(model.runStats.runs).toBe(before + 1);
    }
  }, 120_000);

  afterAll(async () => {
    await model?.close();
  });

  it("runs queries that arrive while the model is busy together, each getting the embedding it gets alone", async () => {
    expect(tensors.length).toBeGreaterThanOrEqual(5);
    const before = model.runStats;
    // All issued at once: the first runs at once, the others wait for it and go in one run.
    const together = await Promise.all(tensors.map((t) => model.embed([t])));
    const after = model.runStats;
    expect(after.runs - before.runs).toBe(2);
    expect(after.inputs - before.inputs).toBe(tensors.length);
    together.forEach(([v], i) => {
      expect(maxGap(v as Float32Array, alone[i] as Float32Array)).toBeLessThan(1e-5);
    });
    // Different images, different embeddings: no answer went to the wrong call.
    expect(maxGap(together[1]?.[0] as Float32Array, alone[2] as Float32Array)).toBeGreaterThan(1e-2);
  });

  it("runs the others again on their own when a malformed input fails the whole batch", async () => {
    const short = new Uint8Array(10);
    const before = model.runStats.runs;
    const calls = [tensors[3], tensors[4], short, tensors[0]].map((t) => model.embed([t as ModelInput]));
    expect(await Promise.all(calls.map(codeOf))).toEqual([
      undefined,
      undefined,
      "FEATURE_EXTRACTION_FAILED",
      undefined,
    ]);
    const values = await Promise.all([calls[0], calls[1], calls[3]]);
    expect(maxGap(values[0]?.[0] as Float32Array, alone[3] as Float32Array)).toBeLessThan(1e-5);
    expect(maxGap(values[1]?.[0] as Float32Array, alone[4] as Float32Array)).toBeLessThan(1e-5);
    expect(maxGap(values[2]?.[0] as Float32Array, alone[0] as Float32Array)).toBeLessThan(1e-5);
    // The first alone; the batch of the other three fails before it reaches the worker; then the two
    // good ones alone.
    expect(model.runStats.runs - before).toBe(3);
  });

  it("answers concurrent searches of real image files, a corrupt one failing with its own error", async () => {
    const embedder = createEmbedder({ model, modelConfig: config.model, limits });
    const corrupt = Buffer.concat([(images[0] as Buffer).subarray(0, 2000)]);
    const files = [images[0], corrupt, images[1], images[2], images[3]] as Buffer[];
    const results = await Promise.allSettled(files.map((b) => embedder.embedOne(b)));
    expect(results.map((r) => r.status)).toEqual([
      "fulfilled",
      "rejected",
      "fulfilled",
      "fulfilled",
      "fulfilled",
    ]);
    const rejected = results[1];
    if (rejected?.status === "rejected")
      expect(isDomainError(rejected.reason) && rejected.reason.code).toBe("INVALID_IMAGE_FORMAT");
    [0, 2, 3, 4].forEach((k, n) => {
      const r = results[k];
      if (r?.status === "fulfilled")
        expect(maxGap(r.value.embedding, alone[n] as Float32Array)).toBeLessThan(1e-5);
    });
  });

  it("waits up to the queue delay for company when the model is idle", async () => {
    const delayed = loadConfig({
      MODELS_DIR,
      INFERENCE_MAX_BATCH: "4",
      INFERENCE_MAX_QUEUE_DELAY_US: "20000",
    });
    const m = await loadEmbeddingModel(delayed.model, await sha256File(delayed.model.path));
    try {
      const before = m.runStats.runs;
      const out = await Promise.all(tensors.slice(0, 3).map((t) => m.embed([t])));
      expect(m.runStats.runs - before).toBe(1);
      out.forEach(([v], i) => {
        expect(maxGap(v as Float32Array, alone[i] as Float32Array)).toBeLessThan(1e-5);
      });
      // A full batch goes at once; the fifth call waits for the next.
      const five = await Promise.all(tensors.slice(0, 5).map((t) => m.embed([t])));
      expect(five).toHaveLength(5);
      expect(m.runStats.runs - before).toBe(3);
    } finally {
      await m.close();
    }
  });
});
