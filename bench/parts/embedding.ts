import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { MODEL_PRESET_NAMES, MODEL_PRESETS, type ModelPreset } from "../../src/config/model-presets.js";
import { type Distribution, distribution } from "../../tools/shared/stats.js";
import { type BenchContext, realImages } from "../context.js";

/** Embedding throughput and latency of one model preset. */
export interface EmbeddingResult {
  /** The preset, and "(texture off)" for the run of a texture preset without its texture descriptors. */
  preset: string;
  /** Why the preset was not measured, when it was not. */
  notRun?: string;
  modelId?: string;
  dimension?: number;
  /** Images per inference batch (EMBEDDING_BATCH_SIZE) and files per ingestion step. */
  batchSize?: number;
  ingestStep?: number;
  images?: number;
  /** End-to-end ingestion: read, hash, decode, preprocess, inference, object upload, DB writes. */
  ingestImagesPerSecond?: number;
  ingestSeconds?: number;
  /** The thumbnail pass that follows ingestion: seconds, and images per second of the whole run. */
  thumbnailSeconds?: number;
  withThumbnailsImagesPerSecond?: number;
  /** One query image at a time through `embedder.embedOne` (ms). */
  decodeMs?: Distribution;
  inferenceMs?: Distribution;
  totalMs?: Distribution;
  /** Median size of the images used for the latency samples (bytes). */
  medianImageBytes?: number;
}

/**
 * For each model preset with a model file: ingests real gallery images through the real ingestion path
 * into a scratch database and bucket (images/s), then embeds query images one at a time (latency of
 * decode + preprocess and of inference).
 */
export async function benchEmbedding(ctx: BenchContext): Promise<EmbeddingResult[]> {
  const { opts } = ctx;
  const gallery = await realImages(opts.datasetsDir, "gallery", opts.ingestImages);
  const queries = await realImages(opts.datasetsDir, "query", opts.latencySamples);
  const queryBytes = await Promise.all(queries.map((q) => readFile(q.path)));
  const results: EmbeddingResult[] = [];
  // A preset with a texture tensor runs twice: with it (the default) and without, for its cost.
  const runs = MODEL_PRESET_NAMES.filter((n) => opts.embedPresets.includes(n)).flatMap((name) =>
    (MODEL_PRESETS[name] as ModelPreset).textureTensor
      ? [
          { name, label: name, vars: {} as Record<string, string> },
          { name, label: `${name} (texture off)`, vars: { MODEL_TEXTURE_TENSOR: "none" } },
        ]
      : [{ name, label: name, vars: {} as Record<string, string> }],
  );
  for (const { name, label: preset, vars } of runs) {
    const file = path.resolve(opts.modelsDir, name, "model.onnx");
    if (!existsSync(file)) {
      results.push({ preset, notRun: `no model file at ${file}` });
      continue;
    }
    ctx.log(`embedding: ${preset}: ingesting ${gallery.length} images`);
    const env = await ctx.factory.create(`bench_embed_${name}${vars.MODEL_TEXTURE_TENSOR ? "_notex" : ""}`, {
      MODEL_PRESET: name,
      ...vars,
    });
    const app = await env.createApp();
    try {
      // Warm-up: the first inference allocates onnxruntime's buffers.
      for (const b of queryBytes.slice(0, 3)) await app.embedder.embedOne(b);
      const summary = await app.ingest.ingest(gallery);
      if (summary.failed > 0) ctx.log(`embedding: ${preset}: ${summary.failed} failures`);
      const decode: number[] = [];
      const inference: number[] = [];
      const total: number[] = [];
      for (const b of queryBytes) {
        const t0 = performance.now();
        const { timing } = await app.embedder.embedOne(b);
        total.push(performance.now() - t0);
        decode.push(timing.decodeMs);
        inference.push(timing.inferenceMs);
      }
      results.push({
        preset,
        modelId: app.embedder.modelId,
        dimension: app.embedder.dimension,
        batchSize: env.config.model.batchSize,
        ingestStep: env.config.model.batchSize * 4,
        images: summary.imported,
        ingestImagesPerSecond: summary.imagesPerSecond,
        ingestSeconds: summary.durationMs / 1000,
        thumbnailSeconds: summary.thumbnails.durationMs / 1000,
        withThumbnailsImagesPerSecond:
          summary.imported / ((summary.durationMs + summary.thumbnails.durationMs) / 1000),
        decodeMs: distribution(decode),
        inferenceMs: distribution(inference),
        totalMs: distribution(total),
        medianImageBytes: distribution(queryBytes.map((b) => b.length)).p50,
      });
    } finally {
      await app.close();
      await env.dispose();
    }
  }
  return results;
}
