import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { RebuildTask } from "../jobs/rebuild.job.js";
import type { IndexState } from "../matchers/matcher.js";
import type { SearchTiming } from "../search/search.service.js";

/** Prefix of every series the service defines (Prometheus naming: one prefix per application). */
const PREFIX = "defect_lens_";

/** Seconds; from 1 ms (a cached search stage) to 30 s (REQUEST_DEADLINE_MS's default). */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The service's Prometheus metrics (prom-client), in a registry of their own so two apps in one process
 * (tests) never share series. Default process metrics include `defect_lens_nodejs_eventloop_lag_seconds`
 * and its percentiles from `monitorEventLoopDelay`.
 */
export function createMetrics({
  indexStates,
  activeIndexVersion = () => null,
}: {
  indexStates: () => readonly IndexState[];
  /** The deployment's active index version of an index (the replica's last read), or null. */
  activeIndexVersion?: (s: IndexState) => string | null;
}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: PREFIX });

  const searchStage = new Histogram({
    name: `${PREFIX}search_stage_duration_seconds`,
    help: "Time per stage of successful searches: fetch, decode, inference, search, and total.",
    labelNames: ["stage"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const searches = new Counter({
    name: `${PREFIX}search_requests_total`,
    help: "Searches by outcome (ok, error) and error code (extensions.code; empty when ok).",
    labelNames: ["outcome", "code"] as const,
    registers: [registry],
  });
  const embeddings = new Counter({
    name: `${PREFIX}embeddings_computed_total`,
    help: "Image embeddings computed by the model (query images, ingestion, rebuilds).",
    registers: [registry],
  });
  const rebuildDuration = new Histogram({
    name: `${PREFIX}rebuild_duration_seconds`,
    help: "Duration of index rebuild tasks, by final status (succeeded, failed).",
    labelNames: ["status"] as const,
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
    registers: [registry],
  });
  const rebuilds = new Counter({
    name: `${PREFIX}rebuilds_total`,
    help: "Index rebuild tasks finished, by status (succeeded, failed).",
    labelNames: ["status"] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: "HTTP requests by route and status code.",
    labelNames: ["method", "route", "status_code"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });

  // Index gauges are read from the matchers when scraped, so they never go stale.
  const indexLabels = ["version", "image_type"] as const;
  const perIndex = (
    name: string,
    help: string,
    value: (s: IndexState) => number | null,
  ): Gauge<(typeof indexLabels)[number]> =>
    new Gauge({
      name: `${PREFIX}${name}`,
      help,
      labelNames: indexLabels,
      registers: [registry],
      collect() {
        this.reset();
        for (const s of indexStates()) {
          const v = value(s);
          if (v !== null) this.set({ version: s.version, image_type: s.imageType }, v);
        }
      },
    });
  perIndex("index_images", "Images in the served index (0 while not ready).", (s) => (s.ready ? s.count : 0));
  perIndex("index_ready", "1 when the index is served, else 0.", (s) => (s.ready ? 1 : 0));
  perIndex("index_built_timestamp_seconds", "When the served index was built (Unix time).", (s) =>
    s.builtAt ? Date.parse(s.builtAt) / 1000 : null,
  );
  perIndex(
    "index_recall_at_10",
    "recall@10 the build measured (approximate indexes only).",
    (s) => s.recallAt10,
  );

  // Which index version each index serves and which is active: equal labels mean the replica is current.
  const versionLabels = ["version", "image_type", "index_version"] as const;
  const versionInfo = (name: string, help: string, id: (s: IndexState) => string | null) =>
    new Gauge({
      name: `${PREFIX}${name}`,
      help,
      labelNames: versionLabels,
      registers: [registry],
      collect() {
        this.reset();
        for (const s of indexStates()) {
          const v = id(s);
          if (v) this.set({ version: s.version, image_type: s.imageType, index_version: v.slice(0, 12) }, 1);
        }
      },
    });
  versionInfo(
    "index_version_served_info",
    "1 for the index version this replica serves (first 12 hex of its id).",
    (s) => s.indexVersionId,
  );
  versionInfo(
    "index_version_active_info",
    "1 for the index version the deployment has active (first 12 hex of its id).",
    activeIndexVersion,
  );
  perIndex("index_version_current", "1 when this replica serves the active index version, else 0.", (s) => {
    const active = activeIndexVersion(s);
    return active === null ? null : s.indexVersionId === active ? 1 : 0;
  });

  return {
    registry,
    /** Records one finished search: per-stage latency when it succeeded, and its outcome. */
    observeSearch(outcome: { timing: SearchTiming } | { errorCode: string }) {
      if ("timing" in outcome) {
        const t = outcome.timing;
        searchStage.observe({ stage: "fetch" }, t.fetchMs / 1000);
        searchStage.observe({ stage: "decode" }, t.decodeMs / 1000);
        searchStage.observe({ stage: "inference" }, t.inferenceMs / 1000);
        searchStage.observe({ stage: "search" }, t.searchMs / 1000);
        searchStage.observe({ stage: "total" }, t.totalMs / 1000);
        searches.inc({ outcome: "ok", code: "" });
      } else searches.inc({ outcome: "error", code: outcome.errorCode });
    },
    /** Counts `n` embeddings computed. */
    countEmbeddings(n: number) {
      if (n > 0) embeddings.inc(n);
    },
    /** Records a finished rebuild task. */
    observeRebuild(task: Readonly<RebuildTask>) {
      rebuilds.inc({ status: task.status });
      if (task.durationMs !== null) rebuildDuration.observe({ status: task.status }, task.durationMs / 1000);
    },
    /** Records one HTTP response; `route` is the route pattern, never the raw URL (bounded cardinality). */
    observeHttp(method: string, route: string, statusCode: number, seconds: number) {
      httpDuration.observe({ method, route, status_code: String(statusCode) }, seconds);
    },
    /** The exposition text and its content type. */
    async exposition(): Promise<{ contentType: string; body: string }> {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

/** The metrics' type, derived from their factory. */
export type Metrics = ReturnType<typeof createMetrics>;
