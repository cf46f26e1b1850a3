/**
 * A hostile-load probe against the current service: a 500-alias operation, 200
 * concurrent searches with `status` polled meanwhile. Prints one Markdown table.
 * Usage: npx tsx bench/hostile.ts [--models-dir ../shared/models] [--datasets-dir ../shared/datasets]
 */
import { readFile } from "node:fs/promises";
import { Command } from "commander";
import { IMAGE_TYPES } from "../src/shared/types.js";
import { createScratchFactory, stderrLogger } from "../tools/shared/scratch-env.js";
import { distribution } from "../tools/shared/stats.js";
import { realImages } from "./context.js";

const opts = new Command()
  .option("--models-dir <dir>", "folder holding <preset>/model.onnx", "../shared/models")
  .option("--datasets-dir <dir>", "folder of dataset folders", "../shared/datasets")
  .option("--pg-admin-url <url>", "PostgreSQL server", "postgres://postgres@127.0.0.1:5432/postgres")
  .option("--concurrency <n>", "concurrent searches", "200")
  .parse()
  .opts<{ modelsDir: string; datasetsDir: string; pgAdminUrl: string; concurrency: string }>();

const factory = await createScratchFactory(
  { pgAdminUrl: opts.pgAdminUrl, modelsDir: opts.modelsDir },
  stderrLogger("error"),
);
const env = await factory.create("bench_hostile", { ADMIN_TOKEN: "hostile-probe-token-0123456789" });
const app = await env.createApp();
try {
  await app.ingest.ingest(await realImages(opts.datasetsDir, "gallery", 300));
  await app.jobs.start({
    targets: IMAGE_TYPES.map((t) => ({ version: "v2", imageType: t })),
    trigger: "admin",
  });
  await app.jobs.whenIdle();
  const { url } = await app.listen();
  const image = (await readFile((await realImages(opts.datasetsDir, "query", 1))[0]?.path ?? "")).toString(
    "base64",
  );
  const post = async (body: unknown) => {
    const t0 = performance.now();
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as { errors?: { extensions?: { code?: string } }[] };
    return {
      status: res.status,
      code: json.errors?.[0]?.extensions?.code ?? "ok",
      ms: performance.now() - t0,
    };
  };
  const search = "query($img: String!) { searchSimilar(input: { image: { base64: $img } }) { indexSize } }";
  const aliases = Array.from(
    { length: 500 },
    (_, i) => `a${i}: searchSimilar(input: { image: { base64: $img } }) { indexSize }`,
  ).join(" ");
  const bomb = await post({ query: `query($img: String!) { ${aliases} }`, variables: { img: image } });

  const statusMs: number[] = [];
  let loading = true;
  const poller = (async () => {
    while (loading) statusMs.push((await post({ query: "{ status { activeVersion } }" })).ms);
  })();
  const t0 = performance.now();
  const answers = await Promise.all(
    Array.from({ length: Number(opts.concurrency) }, () =>
      post({ query: search, variables: { img: image } }),
    ),
  );
  const wallMs = performance.now() - t0;
  loading = false;
  await poller;
  const byCode = new Map<string, number[]>();
  for (const a of answers)
    byCode.set(`${a.code} (HTTP ${a.status})`, [...(byCode.get(`${a.code} (HTTP ${a.status})`) ?? []), a.ms]);
  const rows = [
    ["500-alias operation", `${bomb.code}, HTTP ${bomb.status}`, `${bomb.ms.toFixed(1)} ms`],
    ...[...byCode].map(([code, ms]) => {
      const d = distribution(ms);
      return [
        `${opts.concurrency} concurrent searches: ${code}`,
        `${ms.length}`,
        `p50 ${d.p50.toFixed(0)} / p99 ${d.p99.toFixed(0)} / max ${d.max.toFixed(0)} ms`,
      ];
    }),
    ["all 200 answered within", "", `${(wallMs / 1000).toFixed(2)} s`],
    (() => {
      const d = distribution(statusMs);
      return [
        "status during the load",
        `${statusMs.length}`,
        `p50 ${d.p50.toFixed(1)} / p99 ${d.p99.toFixed(1)} / max ${d.max.toFixed(1)} ms`,
      ];
    })(),
  ];
  console.log(
    ["| probe | outcome | time |", "| --- | --- | --- |", ...rows.map((r) => `| ${r.join(" | ")} |`)].join(
      "\n",
    ),
  );
} finally {
  await app.close();
  await env.dispose();
  await factory.close();
}
