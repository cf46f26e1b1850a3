import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SERVICE_NODE_FLAGS } from "../../test/support/replica-process.js";
import { type BenchContext, ingestAndRebuild, since } from "../context.js";
import { writePaddedIndex } from "../padded-index.js";

/** Startup of the real server with one persisted defect index size. */
export interface StartupResult {
  /** Vectors in the persisted defect index. */
  vectors: number;
  /** Its FAISS factory (INDEX_FACTORY=auto resolved for its size). */
  factory?: string;
  notRun?: string;
  /** Process spawn to the "GraphQL endpoint" line (s). */
  readySeconds?: number;
  /** Spawn to the first answered status query reporting the index as loaded (s). */
  statusSeconds?: number;
  /** How the defect index came to be served (LOADED = from the persisted files, as wanted). */
  source?: string;
  servedCount?: number;
  /** Resident memory of the server once ready (bytes). */
  rssBytes?: number;
  /** Spawn to the server's own log lines (s): model loaded, each index loaded. */
  phases?: Record<string, number>;
}

const REPO = fileURLToPath(new URL("../../", import.meta.url));
/** What `npm start` and the image run: the service compiled by scripts/build.mjs. */
const MAIN = path.join(REPO, "dist", "main.js");
const READY_LINE = /GraphQL endpoint:\s+(\S+)/;
const TIMEOUT_MS = 300_000;

function rssOf(pid: number | undefined): Promise<number> {
  return readFile(`/proc/${pid}/status`, "utf8")
    .then((s) => Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? Number.NaN) * 1024)
    .catch(() => Number.NaN);
}

/** Seconds from spawn to each interesting pino line of the server's stdout. */
function phasesOf(stdout: string, spawnedAt: number): Record<string, number> {
  const phases: Record<string, number> = {};
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const entry = JSON.parse(line) as { time?: number; msg?: string; imageType?: string };
      if (!entry.time || !entry.msg) continue;
      const name =
        entry.msg === "index loaded" || entry.msg === "index rebuilt and swapped in"
          ? `${entry.msg} (${entry.imageType})`
          : entry.msg;
      if (/model loaded|index loaded|rebuilt|defect-lens ready|S3|migrat/i.test(name))
        phases[name] = (entry.time - spawnedAt) / 1000;
    } catch {
      // not a log line
    }
  }
  return phases;
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 20_000).unref();
  });
}

/** A running server child process, once it printed its GraphQL endpoint. */
export interface SpawnedServer {
  child: ChildProcess;
  /** GraphQL endpoint URL. */
  url: string;
  /** Everything it printed on stdout so far. */
  out(): string;
  stop(): Promise<void>;
}

let built = false;
/** Compiles src/ to dist/ once per bench run, as `npm start` does before it runs the service. */
function buildOnce(): void {
  if (!built) execFileSync(process.execPath, [path.join(REPO, "scripts", "build.mjs")], { stdio: "inherit" });
  built = true;
}

/**
 * Spawns `node <SERVICE_NODE_FLAGS> dist/main.js` (compiled first, once, outside any timing) with `env`
 * (on top of this process's) and waits for its endpoint line.
 */
export async function spawnServer(env: Record<string, string>): Promise<SpawnedServer> {
  buildOnce();
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, MAIN], {
    cwd: REPO,
    env: { ...process.env, PORT: "0", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("not ready within 300 s")), TIMEOUT_MS);
      const check = () => {
        const m = READY_LINE.exec(out);
        if (m?.[1]) {
          clearTimeout(timer);
          child.stdout?.off("data", check);
          resolve(m[1]);
        }
      };
      child.stdout?.on("data", check);
      child.once("exit", (code) =>
        reject(new Error(`server exited with ${code} before ready: ${out.slice(-500)}`)),
      );
    });
    return { child, url, out: () => out, stop: () => stop(child) };
  } catch (err) {
    await stop(child);
    throw err;
  }
}

/** Spawns `node dist/main.js` with `env` and times it until ready. */
async function timeStartup(env: Record<string, string>, expected: number): Promise<StartupResult> {
  buildOnce();
  const t0 = performance.now();
  const spawnedAt = Date.now();
  const server = await spawnServer({ ...env, STARTUP_REBUILD: "if-needed" });
  const { child, url } = server;
  try {
    const out = server.out();
    const readySeconds = since(t0) / 1000;
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ status { indexes { version imageType ready count source } } }" }),
    });
    const json = (await res.json()) as {
      data?: { status: { indexes: { version: string; imageType: string; count: number; source: string }[] } };
    };
    const statusSeconds = since(t0) / 1000;
    const defect = json.data?.status.indexes.find((i) => i.version === "V2" && i.imageType === "DEFECT");
    return {
      vectors: expected,
      readySeconds,
      statusSeconds,
      source: defect?.source,
      servedCount: defect?.count,
      rssBytes: await rssOf(child.pid),
      phases: phasesOf(out, spawnedAt),
    };
  } finally {
    await stop(child);
  }
}

/**
 * Startup of the real server (`dist/main.js` in a child process, STARTUP_REBUILD=if-needed) against a
 * prepared index cache: a small real gallery (fixed costs: Node, module loading, migrations, model load), then the
 * defect index padded with synthetic vectors to each size >= 100k of `--sizes`.
 */
export async function benchStartup(ctx: BenchContext): Promise<StartupResult[]> {
  const { opts } = ctx;
  // INDEX_FACTORY as the service defaults (auto: Flat while small, the compressed ANN index when large).
  const env = await ctx.factory.create("bench_startup", { MODEL_PRESET: opts.model });
  const results: StartupResult[] = [];
  try {
    let app = await env.createApp();
    let factory = "Flat";
    let small = 0;
    try {
      await ingestAndRebuild(app, opts.datasetsDir, 60);
      small = app.matchers.get("v2")?.state("defect").count ?? 0;
    } finally {
      await app.close();
    }
    ctx.log(`startup: real gallery (${small} defect vectors)`);
    results.push(await timeStartup(env.env, small));
    const sizes = [...new Set([100_000, 1_000_000, ...opts.sizes.filter((s) => s >= 100_000)])].sort(
      (a, b) => a - b,
    );
    for (const size of sizes) {
      if (!opts.sizes.includes(size)) {
        results.push({ vectors: size, notRun: `not run: opt-in (add ${size} to --sizes)` });
        continue;
      }
      ctx.log(`startup: writing a persisted index of ${size} vectors`);
      app = await env.createApp();
      try {
        const padded = await writePaddedIndex(app, size, await ctx.real());
        factory = padded.factory;
      } finally {
        await app.close();
      }
      ctx.log(`startup: ${size} vectors`);
      results.push({ ...(await timeStartup(env.env, size)), factory });
    }
    return results;
  } finally {
    await env.dispose();
  }
}
