import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { loadConfig } from "../src/config/config.js";
import { MODEL_PRESET_NAMES, MODEL_PRESETS, type ModelPresetName } from "../src/config/model-presets.js";
import { applyNativeThreadSettings } from "../src/config/native-threads.js";
import { machineInfo } from "../tools/shared/machine.js";
import { createScratchFactory, stderrLogger } from "../tools/shared/scratch-env.js";
import { type BenchContext, type BenchOptions, PARTS, type PartName } from "./context.js";
import { benchEmbedding } from "./parts/embedding.js";
import { benchGallery } from "./parts/gallery.js";
import { benchHttp } from "./parts/http.js";
import { benchRebuild } from "./parts/rebuild.js";
import { benchReplicas } from "./parts/replicas.js";
import { benchSearch } from "./parts/search.js";
import { benchStartup } from "./parts/startup.js";
import { type RealEmbeddings, realEmbeddings } from "./real-mixture.js";
import { type BenchReport, renderBench } from "./report.js";

const ints = (v: string) =>
  v.split(",").map((x) => {
    const n = Number(x.trim().replace(/_/g, "").replace(/k$/i, "000").replace(/m$/i, "000000"));
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`not a whole number: ${x}`);
    return n;
  });
const int = (v: string) => ints(v)[0] as number;
const parts = (v: string) =>
  v.split(",").map((p) => {
    if (!(PARTS as readonly string[]).includes(p))
      throw new InvalidArgumentError(`unknown part ${p}; parts: ${PARTS.join(", ")}`);
    return p as PartName;
  });

const program = new Command()
  .name("npm run bench --")
  .description("Speed, memory and scale of defect-lens, measured on the real service code paths.")
  .option("--only <parts>", `comma-separated parts (${PARTS.join(", ")})`, parts, [...PARTS])
  .option(
    "--sizes <list>",
    "real-mixture gallery sizes for search, startup and replicas (1M is opt-in: 10000,100000,1000000)",
    ints,
    [10_000, 100_000],
  )
  .option(
    "--factories <list>",
    "FAISS factory strings for search, separated by ';'",
    (v: string) => v.split(";").filter(Boolean),
    ["Flat", "HNSW16,SQ8", "PCA512,HNSW32,SQ8"],
  )
  .addOption(
    new Option("--model <preset>", "model of the http, rebuild and startup parts")
      .choices(MODEL_PRESET_NAMES)
      .default("mobilenetv2-12-int8"),
  )
  .option("--models-dir <dir>", "folder holding <preset>/model.onnx", "../shared/models")
  .option("--datasets-dir <dir>", "folder of dataset folders (real images)", "../shared/datasets")
  .option(
    "--pg-admin-url <url>",
    "PostgreSQL server for scratch databases",
    "postgres://postgres@127.0.0.1:5432/postgres",
  )
  .option("--ingest-images <n>", "images ingested per preset (embedding part)", int, 512)
  .option("--embed-presets <list>", "model presets of the embedding part", (v: string) => v.split(","), [
    ...MODEL_PRESET_NAMES,
  ])
  .option("--latency-samples <n>", "single-image embeddings per preset", int, 100)
  .option(
    "--ef-search <list>",
    "HNSW efSearch values to measure (default: the service's INDEX_EF_SEARCH)",
    ints,
    [],
  )
  .option("--queries <n>", "queries per index (search part)", int, 200)
  .option("--max-build-seconds <n>", "skip an index whose projected build time is longer", int, 240)
  .option("--duration <s>", "seconds of load per HTTP concurrency level", int, 10)
  .option("--concurrency <list>", "HTTP concurrency levels", ints, [1, 4, 16])
  .option(
    "--http-sizes <list>",
    "defect index sizes for HTTP after the real gallery (padded with synthetic vectors)",
    ints,
    [100_000],
  )
  .option(
    "--query-image <file>",
    "query image of the http part (default: the query-split JPEG closest to 100 KB)",
  )
  .option("--http-images <n>", "real gallery images ingested for HTTP", int, 2000)
  .option(
    "--http-during-rebuild",
    "after each padded HTTP size, search at c=4 while an index of that size is built again, published and swapped in",
    false,
  )
  .option(
    "--service-env <list>",
    "service variables of every part's service, e.g. ORT_THREADS=1,INFERENCE_MAX_BATCH=8",
    (v: string) =>
      Object.fromEntries(
        v.split(",").map((kv) => {
          const [k, ...rest] = kv.split("=");
          if (!k || rest.length === 0) throw new InvalidArgumentError(`not KEY=VALUE: ${kv}`);
          return [k.trim(), rest.join("=").trim()];
        }),
      ),
    {},
  )
  .option(
    "--encodings <list>",
    "how the HTTP part sends the query image (base64, multipart)",
    (v: string) =>
      v.split(",").map((e) => {
        if (e !== "base64" && e !== "multipart") throw new InvalidArgumentError(`unknown encoding ${e}`);
        return e;
      }),
    ["base64", "multipart"],
  )
  .option(
    "--rebuild-images <n>",
    "gallery images of the rebuild part: the real ones, then mirrored, flipped and rotated copies of them (up to 4x)",
    int,
    1000,
  )
  .option("--out <file>", "JSON output (default bench/results/bench-<time>.json)")
  .showHelpAfterError();

const opts = program.parse().opts<BenchOptions & { out?: string }>();
// The service's FAISS thread settings (FAISS_THREADS), before any FAISS worker loads libgomp.
applyNativeThreadSettings(loadConfig({}));
const log = (line: string) =>
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const started = performance.now();
const scratch = await createScratchFactory(
  { pgAdminUrl: opts.pgAdminUrl, modelsDir: opts.modelsDir },
  stderrLogger("warn"),
);
// --service-env applies to every part's service (after the part's own settings).
const factory: typeof scratch = {
  ...scratch,
  create: (label, overrides) => scratch.create(label, { ...overrides, ...opts.serviceEnv }),
};
let real: Promise<RealEmbeddings> | undefined;
const ctx: BenchContext = {
  opts,
  factory,
  machine: machineInfo(),
  log,
  real: () => {
    real ??= realEmbeddings({
      datasetsDir: opts.datasetsDir,
      modelsDir: opts.modelsDir,
      preset: opts.model,
      log,
    });
    return real;
  },
};
const report: BenchReport = {
  date: new Date().toISOString(),
  command: `npm run bench -- ${process.argv.slice(2).join(" ")}`.trim(),
  machine: ctx.machine,
  options: opts,
  durationSeconds: 0,
  failed: [],
};
const runners: Record<PartName, () => Promise<void>> = {
  embedding: async () => {
    report.embedding = await benchEmbedding(ctx);
  },
  search: async () => {
    report.search = await benchSearch(ctx);
  },
  http: async () => {
    report.http = await benchHttp(ctx);
  },
  rebuild: async () => {
    report.rebuild = await benchRebuild(ctx);
  },
  startup: async () => {
    report.startup = await benchStartup(ctx);
  },
  replicas: async () => {
    report.replicas = await benchReplicas(ctx);
  },
  gallery: async () => {
    report.gallery = await benchGallery(ctx);
  },
};
try {
  for (const part of PARTS.filter((p) => opts.only.includes(p))) {
    const t0 = performance.now();
    log(`${part}: start`);
    try {
      await runners[part]();
    } catch (e) {
      log(`${part}: FAILED ${(e as Error).stack ?? e}`);
      report.failed.push({ part, error: (e as Error).message });
    }
    log(`${part}: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
} finally {
  await factory.close();
}
report.durationSeconds = (performance.now() - started) / 1000;
const out = opts.out ?? path.join("bench", "results", `bench-${report.date.replace(/[:.]/g, "-")}.json`);
await mkdir(path.dirname(path.resolve(out)), { recursive: true });
await writeFile(out, JSON.stringify(report, null, 2));
process.stdout.write(
  `${renderBench(report, MODEL_PRESETS[opts.model as ModelPresetName].dimension)}\nJSON: ${out}\n`,
);
process.exitCode = report.failed.length > 0 ? 1 : 0;
