/**
 * `searchSimilar` load against the service as it is deployed: `node dist/main.js --with-sample-gallery` in
 * its own process (embedded PostgreSQL and S3, the shipped 210-image sample gallery), a multipart upload of
 * one query image from autocannon in another (`bench/load-worker.ts`), and the CPU each of the service's
 * threads spent per request, read from `/proc/<pid>/task/<tid>/stat` before and after the load (Linux only).
 * The in-process `npm run bench -- --only http` shares its process with the benchmark's own state and heap;
 * this one measures what a replica does.
 *
 * With `--replicas N`, N such services run side by side (each with its own embedded servers), each loaded by
 * its own autocannon with concurrency / N connections; req/s are summed and latencies pooled. `--cpu-sets`
 * pins each service process (all its threads, `taskset -a -p`) to its own CPU list, e.g. `0;1` for one replica
 * per core: how a bigger host compares one replica with more threads against more replicas, on 2 cores.
 *
 * Usage: npx tsx bench/service-load.ts [--concurrency 16] [--seconds 15] [--image file.jpg]
 *   [--replicas 2] [--cpu-sets "0;1"] (taskset CPU lists, one per replica, ';'-separated)
 *   [--node-flags="--enable-source-maps"] (Node's flags, default the service's own; the = form, as the value
 *   starts with --); service variables from the environment
 *   (SEARCH_CONCURRENCY=4 npx tsx bench/service-load.ts; ORT_THREADS=2 ...).
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
    replicas: { type: "string", default: "1" },
    "cpu-sets": { type: "string" },
    "node-flags": { type: "string", default: SERVICE_NODE_FLAGS.join(" ") },
  },
});
const shared = process.env.SHARED_DIR ?? path.join(REPO, "..", "shared");
const image =
  values.image ?? path.join(shared, "datasets/magnetic_tile/magnetic_tile/good/exp6_num_338952.jpg");
const replicas = Number(values.replicas);
const cpuSets = values["cpu-sets"]?.split(";").filter(Boolean) ?? [];
const concurrency = Number(values.concurrency);
if (!Number.isInteger(replicas) || replicas < 1) throw new Error("--replicas must be a positive integer");
if (cpuSets.length > 0 && cpuSets.length !== replicas)
  throw new Error(`--cpu-sets names ${cpuSets.length} CPU lists for ${replicas} replicas`);
if (concurrency % replicas !== 0) throw new Error("--concurrency must be a multiple of --replicas");

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
const services: ReplicaProcess[] = [];
try {
  execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: REPO, stdio: "inherit" });
  // The service's settings come from this environment (SEARCH_CONCURRENCY=4 ...), its storage from `dir`.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined),
  );
  for (let i = 0; i < replicas; i++) {
    const service = await startReplica(
      `load-${i}`,
      {
        ...inherited,
        LOG_LEVEL: "warn",
        EMBEDDED_DATA_DIR: path.join(dir, `data-${i}`),
        INDEX_CACHE_DIR: path.join(dir, `index-cache-${i}`),
        EMBEDDED_PG_PORT: String(await freePort()),
        EMBEDDED_S3_PORT: String(await freePort()),
      },
      ["--with-sample-gallery"],
      "node",
      { nodeFlags: (values["node-flags"] ?? "").split(" ").filter(Boolean) },
    );
    services.push(service);
    // One at a time: two first starts at once would measure nothing but slow each other down.
    await service.waitReady(180_000);
    const cpus = cpuSets[i];
    if (cpus !== undefined)
      execFileSync("taskset", ["-a", "-p", "-c", cpus, String(service.child.pid)], { stdio: "ignore" });
  }
  const { body, contentType } = await multipartSearchBody(await readFile(image), path.basename(image), 10);
  const bodyFile = path.join(dir, "body");
  await writeFile(bodyFile, body);
  const specs = services.map((service) => ({
    url: service.graphqlUrl,
    bodyFile,
    contentType,
    headers: { "apollo-require-preflight": "true" },
    connections: concurrency / replicas,
    durationSeconds: 3,
  }));
  await Promise.all(specs.map((spec) => runWorker(spec))); // warm-up
  const pids = services.map((s) => s.child.pid as number);
  const before = await Promise.all(pids.map(threadTicks));
  const outcomes = await Promise.all(
    specs.map((spec) => runWorker({ ...spec, durationSeconds: Number(values.seconds) })),
  );
  const after = await Promise.all(pids.map(threadTicks));
  const requests = outcomes.reduce((s, o) => s + o.requests, 0);
  const perSecond = outcomes.reduce((s, o) => s + o.requests / o.durationSeconds, 0);
  const latency = distribution(outcomes.flatMap((o) => o.latenciesMs));
  const rssMb: number[] = [];
  for (const pid of pids) {
    const rss = /VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, "utf8"))?.[1];
    rssMb.push(Math.round(Number(rss) / 1024));
  }
  console.log(
    `c=${concurrency}, ${replicas} replica(s)${cpuSets.length > 0 ? ` pinned to ${cpuSets.join(" | ")}` : ""}: ${perSecond.toFixed(1)} req/s, p50 ${latency.p50.toFixed(1)} ms, p99 ${latency.p99.toFixed(1)} ms, non-2xx ${outcomes.reduce((s, o) => s + o.non2xx, 0)}, errors ${outcomes.reduce((s, o) => s + o.errors, 0)}, RSS ${rssMb.join(" + ")} MB`,
  );
  // Per request of the whole load: with several replicas, a thread's CPU is divided by every replica's requests.
  const perThread = pids
    .flatMap((pid, r) =>
      [...(after[r] ?? [])].map(([tid, t]) => ({
        label: `${replicas > 1 ? `r${r}:` : ""}${tid === String(pid) ? "main" : `${t.name}#${tid}`}`,
        ms: (((t.ticks - (before[r]?.get(tid)?.ticks ?? 0)) / TICKS_PER_SECOND) * 1000) / requests,
      })),
    )
    .filter((t) => t.ms > 0.005)
    .sort((a, b) => b.ms - a.ms);
  const total = perThread.reduce((s, t) => s + t.ms, 0);
  console.log(
    `CPU ms per request: ${total.toFixed(2)} (${perThread.map((t) => `${t.label} ${t.ms.toFixed(2)}`).join(", ")})`,
  );
} finally {
  await Promise.all(services.map((s) => s.stop()));
  await rm(dir, { recursive: true, force: true });
}
