import { existsSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { Command, Option } from "commander";
import { MODEL_PRESET_NAMES } from "../src/config/model-presets.js";
import type { MatcherVersion } from "../src/shared/types.js";
import { machineInfo } from "../tools/shared/machine.js";
import { createScratchFactory, stderrLogger } from "../tools/shared/scratch-env.js";
import { loadEvalDataset } from "./dataset.js";
import { evaluateDataset, OPTIONAL_TECHNIQUES } from "./evaluate.js";
import { type EvaluationReport, renderEvaluation } from "./report.js";

interface Options {
  datasetsDir: string;
  datasets?: string;
  model: string;
  modelsDir: string;
  version: MatcherVersion;
  out?: string;
  pgAdminUrl: string;
  databaseUrl?: string;
  maxTopK: string;
  keep?: boolean;
  env: string;
  techniques: boolean;
}

/** Dataset folders: names under `dir`, explicit paths, or every subfolder of `dir` with a split.csv. */
async function datasetRoots(dir: string, list: string | undefined): Promise<string[]> {
  if (list) {
    return list.split(",").map((d) => {
      const p = existsSync(d) ? d : path.join(dir, d);
      return path.resolve(p);
    });
  }
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && existsSync(path.join(dir, e.name, "split.csv")))
    .map((e) => path.resolve(dir, e.name))
    .sort();
}

const program = new Command()
  .name("npm run eval --")
  .description(
    "Retrieval quality of the service on labelled datasets (<product>/<defect or good>/<files> + split.csv): " +
      "ingests each gallery into a scratch database/bucket/index, queries every query image through the real " +
      "search path, and compares with the model used directly and a thumbnail baseline.",
  )
  .option("--datasets-dir <dir>", "folder of dataset folders", "../shared/datasets")
  .option("--datasets <list>", "comma-separated dataset names (under --datasets-dir) or paths; default all")
  .addOption(
    new Option("--model <preset>", "model preset").choices(MODEL_PRESET_NAMES).default("mobilenetv2-12-int8"),
  )
  .option("--models-dir <dir>", "folder holding <preset>/model.onnx", "../shared/models")
  .addOption(new Option("--version <version>", "matcher version").choices(["v1", "v2"]).default("v2"))
  .option("--out <file>", "JSON output (default eval-results/eval-<model>-<time>.json)")
  .option(
    "--pg-admin-url <url>",
    "PostgreSQL server for scratch databases",
    "postgres://postgres@127.0.0.1:5432/postgres",
  )
  .option("--database-url <url>", "use this (named) database instead of a scratch one; one dataset only")
  .option("--max-top-k <n>", "MAX_TOP_K of the service under test (topK of each search)", "1000")
  .option("--keep", "keep scratch databases and folders")
  .option(
    "--env <list>",
    "service variables for the service under test, KEY=VALUE,KEY=VALUE (e.g. MULTI_VIEW_GRID=2,MULTI_VIEW_SIZE=384)",
    "",
  )
  .option(
    "--no-techniques",
    `skip the service runs with each optional technique on (${OPTIONAL_TECHNIQUES.map((t) => t.name).join("; ")}); V2 and scratch databases only`,
  )
  .showHelpAfterError();

const opts = program.parse().opts<Options>();
const roots = await datasetRoots(opts.datasetsDir, opts.datasets);
if (roots.length === 0) program.error(`no dataset folders with a split.csv under ${opts.datasetsDir}`);
if (opts.databaseUrl && roots.length > 1) program.error("--database-url takes one dataset (--datasets NAME)");

const log = (line: string) => process.stderr.write(`[eval] ${line}\n`);
const started = performance.now();
const factory = await createScratchFactory(
  { pgAdminUrl: opts.pgAdminUrl, databaseUrl: opts.databaseUrl, modelsDir: opts.modelsDir, keep: opts.keep },
  stderrLogger("warn"),
);
const report: EvaluationReport = {
  date: new Date().toISOString(),
  command: `npm run eval -- ${process.argv.slice(2).join(" ")}`.trim(),
  machine: machineInfo(),
  preset: opts.model,
  version: opts.version,
  durationMs: 0,
  datasets: [],
};
try {
  for (const root of roots) {
    const dataset = await loadEvalDataset(root);
    const t0 = performance.now();
    const result = await evaluateDataset({
      factory,
      dataset,
      preset: opts.model,
      version: opts.version,
      maxTopK: Number(opts.maxTopK),
      overrides: Object.fromEntries(
        opts.env
          .split(",")
          .filter(Boolean)
          .map((kv) => {
            const at = kv.indexOf("=");
            return [kv.slice(0, at), kv.slice(at + 1)];
          }),
      ),
      techniques: opts.techniques && opts.version === "v2" && !opts.databaseUrl ? OPTIONAL_TECHNIQUES : [],
      log,
    });
    log(
      `${dataset.name}: done in ${((performance.now() - t0) / 1000).toFixed(0)} s, P@10 ${result.service.overall.p10.toFixed(3)}`,
    );
    report.datasets.push(result);
  }
} finally {
  await factory.close();
}
report.durationMs = performance.now() - started;
const out =
  opts.out ?? path.join("eval-results", `eval-${opts.model}-${report.date.replace(/[:.]/g, "-")}.json`);
await mkdir(path.dirname(path.resolve(out)), { recursive: true });
await writeFile(out, JSON.stringify(report, null, 2));
process.stdout.write(`${renderEvaluation(report)}\nJSON: ${out}\n`);
