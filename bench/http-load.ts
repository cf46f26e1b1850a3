import { spawn } from "node:child_process";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { type Distribution, distribution } from "../tools/shared/stats.js";
import type { LoadOutcome, LoadSpec } from "./load-worker.js";

const WORKER = fileURLToPath(new URL("./load-worker.ts", import.meta.url));

/** One load level's figures. */
export interface LoadResult {
  /** How the query image travelled: base64 inside JSON, or a GraphQL multipart upload. */
  encoding: "base64" | "multipart";
  connections: number;
  requests: number;
  requestsPerSecond: number;
  latencyMs: Distribution;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Event-loop delay of the service process during the load (ms). */
  eventLoopDelayMs: { p50: number; p99: number; max: number };
}

/** The search every HTTP load sends: top 10, the fields a results page shows. */
export const SEARCH =
  "query($input: SearchSimilarInput!) { searchSimilar(input: $input) { indexSize tookMs hits { rank score productCode defectCode downloadUrl } } }";

/**
 * {@link SEARCH} of the DEFECT index as a GraphQL multipart request (the image's bytes as a file part):
 * the body as sent, and its content type with the boundary.
 */
export async function multipartSearchBody(
  bytes: Buffer,
  fileName: string,
  topK: number,
): Promise<{ body: Buffer; contentType: string }> {
  const form = new FormData();
  form.append(
    "operations",
    JSON.stringify({
      query: SEARCH,
      variables: { input: { image: { file: null }, imageType: "DEFECT", topK } },
    }),
  );
  form.append("map", JSON.stringify({ 0: ["variables.input.image.file"] }));
  form.append("0", new Blob([new Uint8Array(bytes)], { type: "image/jpeg" }), fileName);
  const multipart = new Response(form);
  return {
    body: Buffer.from(await multipart.arrayBuffer()),
    contentType: multipart.headers.get("content-type") ?? "",
  };
}

/** Runs autocannon in a child process and returns what it printed. */
export function runWorker(spec: LoadSpec): Promise<LoadOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", WORKER, JSON.stringify(spec)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0) return reject(new Error(`load worker exited with ${code}`));
      try {
        resolve(JSON.parse(line) as LoadOutcome);
      } catch (e) {
        reject(e);
      }
    });
  });
}

/**
 * Loads `spec.url` from a child process while sampling this process's event-loop delay (the service
 * must run in this process for that figure to mean anything).
 */
export async function measureLoad(
  spec: LoadSpec & { encoding?: LoadResult["encoding"] },
): Promise<LoadResult> {
  const { slices: _slices, ...result } = await measureLoadUntil(
    spec,
    Promise.resolve(),
    spec.durationSeconds,
    1,
  );
  return result;
}

/**
 * {@link measureLoad} for as long as `until` is unsettled (and for at least `minSlices` slices): the load runs
 * in slices of `sliceSeconds` (each a child process of its own) under one event-loop monitor; latencies of
 * every slice are pooled. `spec.durationSeconds` is ignored.
 */
export async function measureLoadUntil(
  spec: LoadSpec & { encoding?: LoadResult["encoding"] },
  until: Promise<unknown>,
  sliceSeconds = 30,
  minSlices = 0,
): Promise<LoadResult & { slices: number }> {
  let settled = false;
  until.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const latenciesMs: number[] = [];
  const totals = { requests: 0, durationSeconds: 0, non2xx: 0, errors: 0, timeouts: 0, slices: 0 };
  while (!settled || totals.slices < minSlices) {
    const o = await runWorker({ ...spec, durationSeconds: sliceSeconds });
    for (const l of o.latenciesMs) latenciesMs.push(l);
    totals.requests += o.requests;
    totals.durationSeconds += o.durationSeconds;
    totals.non2xx += o.non2xx;
    totals.errors += o.errors;
    totals.timeouts += o.timeouts;
    totals.slices++;
  }
  h.disable();
  const ms = (ns: number) => ns / 1e6;
  return {
    encoding: spec.encoding ?? "base64",
    connections: spec.connections,
    requests: totals.requests,
    requestsPerSecond: latenciesMs.length / Math.max(totals.durationSeconds, 1e-9),
    latencyMs: distribution(latenciesMs),
    non2xx: totals.non2xx,
    errors: totals.errors,
    timeouts: totals.timeouts,
    eventLoopDelayMs: { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) },
    slices: totals.slices,
  };
}
