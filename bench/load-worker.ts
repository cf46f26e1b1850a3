/**
 * Child process of the HTTP benchmark: runs autocannon against the service and prints one JSON line.
 * Run apart from the service process so the load generator neither shares its event loop nor hides
 * its own delays in the service's measurements.
 * Usage: node --import tsx bench/load-worker.ts '<json LoadSpec>'
 */
import { readFileSync } from "node:fs";
import autocannon from "autocannon";

/** What to load and how. */
export interface LoadSpec {
  url: string;
  /** File holding the POST body. */
  bodyFile: string;
  /** Content type of the body; default application/json. */
  contentType?: string;
  /** More request headers (e.g. Apollo's CSRF preflight header for multipart). */
  headers?: Record<string, string>;
  connections: number;
  durationSeconds: number;
}

/** What the worker prints. */
export interface LoadOutcome {
  /** Every 2xx response time (ms), from autocannon's own per-response timer. */
  latenciesMs: number[];
  requests: number;
  durationSeconds: number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

const spec = JSON.parse(process.argv[2] ?? "{}") as LoadSpec;
const latenciesMs: number[] = [];
const result = await new Promise<autocannon.Result>((resolve, reject) => {
  const instance = autocannon(
    {
      url: spec.url,
      method: "POST",
      headers: { "content-type": spec.contentType ?? "application/json", ...spec.headers },
      body: readFileSync(spec.bodyFile),
      connections: spec.connections,
      duration: spec.durationSeconds,
    },
    (err, res) => (err ? reject(err) : resolve(res)),
  );
  instance.on("response", (_client, statusCode, _bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300) latenciesMs.push(responseTime);
  });
});
const outcome: LoadOutcome = {
  latenciesMs,
  requests: result.requests.total,
  durationSeconds: result.duration,
  non2xx: result.non2xx,
  errors: result.errors,
  timeouts: result.timeouts,
};
process.stdout.write(`${JSON.stringify(outcome)}\n`);
