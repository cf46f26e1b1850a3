/**
 * Model migration, measured on a real labelled gallery: search p50/p99 at concurrency 4 on the active model
 * while a candidate's gallery is re-embedded (at MODEL_REEMBED_SHARE) against quiet, the re-embedding's
 * images/s, the labelled comparison of both models, and what a promotion and a rollback take.
 *
 *   npx tsx bench/model-migration.ts --root ../shared/datasets/xsdd --candidate mobilenetv2-1.0
 *   npx tsx bench/model-migration.ts --root samples/xsdd/gallery --candidate mobilenetv2-12-int8 --resize-mode pad
 *   npx tsx bench/model-migration.ts --root ../shared/datasets/neu_det --compare-only --candidate squeezenet1.1
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import type { App } from "../src/app.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { createScratchFactory } from "../tools/shared/scratch-env.js";
import { distribution } from "../tools/shared/stats.js";

const opts = new Command()
  .requiredOption("--root <dir>", "labelled dataset folder (<product>/<defect>/<images>)")
  .requiredOption("--candidate <preset>", "candidate model preset")
  .option("--resize-mode <mode>", "candidate's resize mode")
  .option(
    "--models-dir <dir>",
    "MODELS_DIR",
    process.env.SHARED_DIR ? path.join(process.env.SHARED_DIR, "models") : "../shared/models",
  )
  .option("--share <x>", "MODEL_REEMBED_SHARE", "0.25")
  .option("--quiet-s <s>", "seconds of quiet searching", "10")
  .option("--compare-only", "skip the latency measurement")
  .parse()
  .opts<{
    root: string;
    candidate: string;
    resizeMode?: string;
    modelsDir: string;
    share: string;
    quietS: string;
    compareOnly?: boolean;
  }>();

const factory = await createScratchFactory({
  pgAdminUrl: process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
  modelsDir: path.resolve(opts.modelsDir),
});
const env = await factory.create("model-migration", {
  MODEL_REEMBED_SHARE: opts.share,
  MODEL_SHADOW_SHARE: "0",
  STARTUP_REBUILD: "never",
});
const app: App = await env.createApp();
try {
  const images = await listDatasetImages({ root: path.resolve(opts.root) });
  const gallery = images.filter((_, i) => i % 5 !== 0);
  const queries = images.filter((_, i) => i % 5 === 0 && images[i]?.defectCode !== null).slice(0, 40);
  const t0 = performance.now();
  await app.ingest.ingest(gallery);
  const built = await app.jobs.start({
    targets: [
      { version: "v2", imageType: "defect" },
      { version: "v2", imageType: "normal" },
    ],
    trigger: "admin",
  });
  await app.jobs.untilDone(built.id);
  console.error(
    `gallery: ${gallery.length} images ingested and indexed in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const bytes = await Promise.all(queries.map((q) => readFile(q.path)));

  /** Concurrency-4 searches until `until()`; their latencies (ms) and failures. */
  async function load(until: () => boolean) {
    const ms: number[] = [];
    let failed = 0;
    let i = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!until()) {
          const b = bytes[i++ % bytes.length] as Buffer;
          const s = performance.now();
          try {
            await app.search.search({ image: { bytes: b }, imageType: "defect", topK: 10 });
            ms.push(performance.now() - s);
          } catch {
            failed++;
          }
        }
      }),
    );
    return { ...distribution(ms), failed };
  }

  const row = (label: string, d: Awaited<ReturnType<typeof load>>) =>
    `| ${label} | ${d.n} | ${d.p50.toFixed(1)} | ${d.p99.toFixed(1)} | ${d.failed} |`;
  const lines: string[] = [];
  if (!opts.compareOnly) {
    const quietEnd = performance.now() + Number(opts.quietS) * 1000;
    const quiet = await load(() => performance.now() > quietEnd);
    const reg = await app.modelMigration.register(
      { preset: opts.candidate, resizeMode: opts.resizeMode as "pad" | undefined },
      "bench",
    );
    const prepStart = performance.now();
    let done = false;
    const task = reg.preparation
      ? app.jobs.untilDone(reg.preparation.id).then((t) => {
          done = true;
          return t;
        })
      : null;
    const during = await load(() => done);
    const finished = await task;
    const prepS = (performance.now() - prepStart) / 1000;
    const embedded = finished?.progress.newlyEmbedded ?? 0;
    const quiet2End = performance.now() + Number(opts.quietS) * 1000;
    const quiet2 = await load(() => performance.now() > quiet2End);
    lines.push(
      `MODEL_REEMBED_SHARE ${opts.share}: ${embedded} images re-embedded and indexed in ${prepS.toFixed(1)} s (${(embedded / prepS).toFixed(1)} images/s, build included)`,
      "",
      "| searches at concurrency 4 | n | p50 ms | p99 ms | failed |",
      "|---|---|---|---|---|",
      row("quiet (before)", quiet),
      row("during the re-embedding", during),
      row("quiet (after)", quiet2),
      "",
    );
  } else {
    const reg = await app.modelMigration.register(
      { preset: opts.candidate, resizeMode: opts.resizeMode as "pad" | undefined },
      "bench",
    );
    if (reg.preparation) await app.jobs.untilDone(reg.preparation.id);
  }
  await app.replica.sync();
  const c = await app.modelMigration.compare();
  const f = (x: number | null) => (x === null ? "-" : x.toFixed(3));
  lines.push(
    `| ${path.basename(opts.root)} | model | queries | P@10 (raw, leave-one-out) | suggestion accuracy | gate CV P@10 raw / adapted |`,
    "|---|---|---|---|---|---|",
    ...[c.active, c.candidate].map(
      (q) =>
        `| | ${q.modelId} | ${q.queries} | ${f(q.p10)} | ${f(q.suggestionAccuracy)} | ${f(q.cvRawP10)} / ${f(q.cvAdaptedP10)} |`,
    ),
    "",
  );
  const candidateId = c.candidate.modelId;
  const promote = await app.modelMigration.promote(candidateId, "bench", "bench");
  const rollback = await app.modelMigration.rollback("bench", "bench");
  lines.push(
    `promote ${promote.ms.toFixed(1)} ms, rollback ${rollback.ms.toFixed(1)} ms (request to the new model answering here)`,
  );
  console.log(lines.join("\n"));
} finally {
  await app.close();
  await env.dispose();
  await factory.close();
}
