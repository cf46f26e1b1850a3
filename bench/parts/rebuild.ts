import { readFile } from "node:fs/promises";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { App } from "../../src/app.js";
import { IMAGE_TYPES } from "../../src/shared/types.js";
import { type Distribution, distribution } from "../../tools/shared/stats.js";
import { type BenchContext, paddedGallery, realImages, since } from "../context.js";

/** One rebuild scenario. */
export interface RebuildScenario {
  name: string;
  /** Images in the indexes after it. */
  images: number;
  /** Embeddings the rebuild computed (the rest were reused from the database). */
  newlyEmbedded: number;
  seconds: number;
  /** Time to swap each new index in (ms). */
  swapMs: number[];
}

/** The rebuild part's output. */
export interface RebuildBench {
  scenarios: RebuildScenario[];
  /** Images asked for (`--rebuild-images`). */
  askedImages: number;
  /** Images of the gallery that are copies of real ones (the datasets hold fewer than asked for). */
  copies: number;
  /** In-process `search.search` (real query image, topK 10) with no rebuild running (ms). */
  idleSearchMs: Distribution;
  /** The same, back to back while the from-scratch rebuild runs (ms). */
  duringRebuildSearchMs: Distribution;
  /** Event-loop delay while the from-scratch rebuild and the searches run (ms). */
  duringRebuildEventLoopMs: { p99: number; max: number };
}

async function rebuild(app: App, name: string, during?: () => Promise<void>): Promise<RebuildScenario> {
  const t0 = performance.now();
  const queued = await app.jobs.start({
    targets: IMAGE_TYPES.map((t) => ({ version: "v2", imageType: t })),
    trigger: "admin",
  });
  await during?.();
  const task = await app.jobs.untilDone(queued.id);
  const seconds = since(t0) / 1000;
  if (task.status !== "succeeded") throw new Error(`${name}: rebuild failed: ${task.error}`);
  return {
    name,
    images: task.results.reduce((s, r) => s + r.count, 0),
    newlyEmbedded: task.progress.newlyEmbedded,
    seconds,
    swapMs: task.results.map((r) => r.swapMs),
  };
}

/**
 * Rebuilds of a real gallery through the rebuild job: with every embedding cached in the database, from
 * scratch (embeddings deleted, so every original is fetched from object storage and embedded again),
 * and after 1% new images (embedded at ingestion, and not yet embedded). Measures search latency and
 * event-loop delay while the from-scratch rebuild runs.
 */
export async function benchRebuild(ctx: BenchContext): Promise<RebuildBench> {
  const { opts } = ctx;
  const env = await ctx.factory.create("bench_rebuild", { MODEL_PRESET: opts.model, INDEX_FACTORY: "Flat" });
  const { images: all, copies } = await paddedGallery(
    opts.datasetsDir,
    Math.ceil(opts.rebuildImages * 1.02),
    path.join(env.dir, "copies"),
  ).catch(async (err) => {
    await env.dispose();
    throw err;
  });
  const base = all.slice(0, opts.rebuildImages);
  const extra = Math.max(1, Math.round(opts.rebuildImages / 100));
  const fresh = [
    all.slice(base.length, base.length + extra),
    all.slice(base.length + extra, base.length + 2 * extra),
  ];
  const query = await readFile((await realImages(opts.datasetsDir, "query", 1))[0]?.path ?? "");
  const app = await env.createApp();
  try {
    ctx.log(`rebuild: ingesting ${base.length} images`);
    await app.ingest.ingest(base);
    const scenarios: RebuildScenario[] = [];
    scenarios.push(await rebuild(app, "embeddings cached (after ingestion)"));
    const search = async () => {
      const t = performance.now();
      await app.search.search({ image: { base64: query.toString("base64") }, imageType: "defect", topK: 10 });
      return since(t);
    };
    const idle: number[] = [];
    for (let i = 0; i < 50; i++) idle.push(await search());
    await app.db.pool.query("delete from image_embeddings where model_id = $1", [app.embedder.modelId]);
    const during: number[] = [];
    const h = monitorEventLoopDelay({ resolution: 1 });
    ctx.log("rebuild: from scratch, searching meanwhile");
    h.enable();
    scenarios.push(
      await rebuild(app, "from scratch (no embedding cached)", async () => {
        while ((await app.jobs.open()) !== undefined) during.push(await search());
      }),
    );
    h.disable();
    scenarios.push(await rebuild(app, "embeddings cached (nothing changed)"));
    await app.ingest.ingest(fresh[0] ?? []);
    scenarios.push(await rebuild(app, `+1% new images (${extra}), embedded at ingestion`));
    const { rows } = await app.db.pool.query<{ max: number }>(
      "select coalesce(max(image_id), 0)::int as max from images",
    );
    await app.ingest.ingest(fresh[1] ?? []);
    await app.db.pool.query("delete from image_embeddings where image_id > $1", [rows[0]?.max ?? 0]);
    scenarios.push(await rebuild(app, `+1% new images (${extra}), embedded by the rebuild`));
    return {
      scenarios,
      askedImages: opts.rebuildImages,
      copies,
      idleSearchMs: distribution(idle),
      duringRebuildSearchMs: distribution(during),
      duringRebuildEventLoopMs: { p99: h.percentile(99) / 1e6, max: h.max / 1e6 },
    };
  } finally {
    await app.close();
    await env.dispose();
  }
}
