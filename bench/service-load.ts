/**
 * `searchSimilar` load against the service as it is deployed: `node dist/main.js --with-sample-gallery` in
 * its own process (embedded PostgreSQL and S3, the shipped 210-image sample gallery), a multipart upload of
 * one query image from autocannon in another (`bench/load-worker.ts`), and the CPU each of the service's
 * threads spent per request, read from `/proc/<pid>/task/<tid>/stat` before and after the load (Linux only).
 * The in-process `npm run bench -- --only http` shares its process with the benchmark's own state and heap;
 * this one measures what a replica does.
 *
 * Usage: npx tsx bench/service-load.ts [--concurrency 16] [--seconds 15] [--image file.jpg]
 *   [--node-flags="--enable-source-maps"] (Node's flags, default the service's own; the = form, as the value
 *   starts with --); service variables from the environment
 *   (SEARCH_CONCURRENCY=4 npx tsx bench/service-load.ts).
 */
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  freePort,
  type ReplicaProcess,
  SERVICE_NODE_FLAGS,
  startReplica,
} from "../test/support/replica-process.js";
import { distribution } from "../tools/shared/stats.js";
import { multipartSearchBody, runWorker } from "./http-load.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
/** Clock ticks per second of /proc's utime and stime (USER_HZ; 100 on Linux x86-64). */
const TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

const { values } = parseArgs({
  options: {
    concurrency: { type: "string", default: "16" },
    seconds: { type: "string", default: "15" },
    image: { type: "string" },
    "node-flags": { type: "string", default: SERVICE_NODE_FLAGS.join(" ") },
  },
});
const shared = process.env.SHARED_DIR ?? path.join(REPO, "..", "shared");
const image =
  values.image ?? path.join(shared, "datasets/magnetic_tile/magnetic_tile/good/exp6_num_338952.jpg");

/** CPU ticks (user + system) of every thread of `pid`, by thread id, with the thread's name. */
async function threadTicks(pid: number): Promise<Map<string, { name: string; ticks: number }>> {
  const out = new Map<string, { name: string; ticks: number }>();
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8").catch(() => "");
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    const m = /\((.*)\) (.*)$/.exec(stat.trim());
    if (!m?.[2]) continue;
    const f = m[2].split(" ");
    out.set(tid, { name: m[1] ?? "?", ticks: Number(f[11]) + Number(f[12]) });
  }
  return out;
}

const dir = await mkdtemp(path.join(os.tmpdir(), "defect-lens-load-"));
await chmod(dir, 0o777); // the embedded PostgreSQL runs as `postgres` when this runs as root
let service: ReplicaProcess | undefined;
try {
  execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: REPO, stdio: "inherit" });
  // The service's settings come from this environment (SEARCH_CONCURRENCY=4 ...), its storage from `dir`.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined),
  );
  service = await startReplica(
    "load",
    {
      ...inherited,
      LOG_LEVEL: "warn",
      EMBEDDED_DATA_DIR: path.join(dir, "data"),
      INDEX_CACHE_DIR: path.join(dir, "index-cache"),
      EMBEDDED_PG_PORT: String(await freePort()),
      EMBEDDED_S3_PORT: String(await freePort()),
    },
    ["--with-sample-gallery"],
    "node",
    { nodeFlags: (values["node-flags"] ?? "").split(" ").filter(Boolean) },
  );
  await service.waitReady(180_000);
  const { body, contentType } = await multipartSearchBody(await readFile(image), path.basename(image), 10);
  const bodyFile = path.join(dir, "body");
  await writeFile(bodyFile, body);
  const spec = {
    url: service.graphqlUrl,
    bodyFile,
    contentType,
    headers: { "apollo-require-preflight": "true" },
    connections: Number(values.concurrency),
    durationSeconds: 3,
  };
  await runWorker(spec); // warm-up
  const pid = service.child.pid as number;
  const before = await threadTicks(pid);
  const o = await runWorker({ ...spec, durationSeconds: Number(values.seconds) });
  const after = await threadTicks(pid);
  const latency = distribution(o.latenciesMs);
  const rss = /VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, "utf8"))?.[1];
  console.log(
    `c=${values.concurrency}: ${(o.requests / o.durationSeconds).toFixed(1)} req/s, p50 ${latency.p50.toFixed(1)} ms, p99 ${latency.p99.toFixed(1)} ms, non-2xx ${o.non2xx}, errors ${o.errors}, RSS ${Math.round(Number(rss) / 1024)} MB`,
  );
  const perThread = [...after]
    .map(([tid, t]) => ({
      label: tid === String(pid) ? "main" : `${t.name}#${tid}`,
      ms: (((t.ticks - (before.get(tid)?.ticks ?? 0)) / TICKS_PER_SECOND) * 1000) / o.requests,
    }))
    .filter((t) => t.ms > 0.005)
    .sort((a, b) => b.ms - a.ms);
  const total = perThread.reduce((s, t) => s + t.ms, 0);
  console.log(
    `CPU ms per request: ${total.toFixed(2)} (${perThread.map((t) => `${t.label} ${t.ms.toFixed(2)}`).join(", ")})`,
  );
} finally {
  await service?.stop();
  await rm(dir, { recursive: true, force: true });
}
