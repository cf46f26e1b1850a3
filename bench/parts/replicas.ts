import { mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { type Distribution, distribution } from "../../tools/shared/stats.js";
import { type BenchContext, ingestAndRebuild, realImages, since } from "../context.js";
import { writePaddedIndex } from "../padded-index.js";
import { spawnServer } from "./startup.js";

/** One gallery size of the replica benchmark. */
export interface ReplicaResult {
  vectors: number;
  factory?: string;
  notRun?: string;
  /** FAISS build of the padded index alone (s): a lower bound of what a replica rebuilding itself spends (it also embeds). */
  buildSeconds?: number;
  /** Upload to the bucket and record (s), after the build. */
  publishSeconds?: number;
  /** Bytes of the artifact in the bucket. */
  artifactBytes?: number;
  /** A new replica (empty cache): spawn to its GraphQL endpoint, serving the active version (s). */
  newReplicaSeconds?: number;
  newReplicaSource?: string;
  /** activateIndexVersion to the other replica serving the new version: download, verify, load, swap (s). */
  activateToServedSeconds?: number;
  /** Searches on that replica over HTTP at concurrency 1 (ms), quiet and while it downloads and swaps. */
  quiet?: Distribution;
  duringSwap?: Distribution;
  failedDuringSwap?: number;
}

const STATUS = `{ status { indexes { version imageType count source indexVersion } indexVersions { id artifactBytes } } }`;
const QUIET_MS = 5000;

/**
 * Replicas on one PostgreSQL and one bucket: a publisher (this process) writes a padded V2 defect index of
 * each size and activates it; a second replica (`src/main.ts` in a child process, empty cache) starts from
 * the bucket; then a new version is activated while that replica answers searches.
 */
export async function benchReplicas(ctx: BenchContext): Promise<ReplicaResult[]> {
  const { opts } = ctx;
  const env = await ctx.factory.create("bench_replicas", { MODEL_PRESET: opts.model, STATE_POLL_MS: "1000" });
  const results: ReplicaResult[] = [];
  const [query] = await realImages(opts.datasetsDir, "query", 1);
  if (!query) throw new Error(`no query image under ${opts.datasetsDir}`);
  const queryImage = (await readFile(query.path)).toString("base64");
  const app = await env.createApp();
  try {
    await ingestAndRebuild(app, opts.datasetsDir, 60);
    for (const size of opts.sizes) {
      ctx.log(`replicas: publishing a ${size}-vector index`);
      const first = await writePaddedIndex(app, size, await ctx.real());
      const cache = await mkdtemp(path.join(env.dir, "replica-"));
      const t0 = performance.now();
      const b = await spawnServer({ ...env.env, INDEX_CACHE_DIR: cache, REPLICA_ID: `bench-${size}` });
      const newReplicaSeconds = since(t0) / 1000;
      const gql = async (query: string, variables: Record<string, unknown> = {}) => {
        const res = await fetch(b.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ query, variables }),
        });
        return (await res.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
      };
      type Status = {
        indexes: {
          version: string;
          imageType: string;
          count: number;
          source: string;
          indexVersion: string;
        }[];
        indexVersions: { id: string; artifactBytes: number }[];
      };
      const defect = async () =>
        ((await gql(STATUS)).data?.status as Status | undefined)?.indexes.find(
          (i) => i.version === "V2" && i.imageType === "DEFECT",
        );
      const search = async () => {
        const t = performance.now();
        const r = await gql("query($i: SearchSimilarInput!) { searchSimilar(input: $i) { hits { rank } } }", {
          i: { image: { base64: queryImage }, topK: 5, version: "V2" },
        });
        const ok = (r.data?.searchSimilar as { hits: unknown[] } | undefined)?.hits.length === 5;
        return { ms: since(t), ok };
      };
      try {
        const served = await defect();
        const status = (await gql(STATUS)).data?.status as Status | undefined;
        const quiet: number[] = [];
        for (const until = performance.now() + QUIET_MS; performance.now() < until; ) {
          const r = await search();
          if (r.ok) quiet.push(r.ms);
        }
        ctx.log(`replicas: publishing a second ${size}-vector version and activating it`);
        const second = await writePaddedIndex(app, size, await ctx.real(), { activate: false });
        const during: number[] = [];
        let failed = 0;
        const t1 = performance.now();
        await app.admin.activateIndexVersion(second.indexVersionId, "bench", "bench");
        let swapped = Number.NaN;
        while (since(t1) < 600_000) {
          const r = await search();
          if (r.ok) during.push(r.ms);
          else failed++;
          if ((await defect())?.indexVersion === second.indexVersionId) {
            swapped = since(t1) / 1000;
            break;
          }
        }
        results.push({
          vectors: size,
          factory: first.factory,
          buildSeconds: first.buildSeconds,
          publishSeconds: first.publishSeconds,
          artifactBytes: status?.indexVersions.find((v) => v.id === first.indexVersionId)?.artifactBytes,
          newReplicaSeconds,
          newReplicaSource: served?.source,
          activateToServedSeconds: swapped,
          quiet: distribution(quiet),
          duringSwap: distribution(during),
          failedDuringSwap: failed,
        });
      } finally {
        await b.stop();
        await rm(cache, { recursive: true, force: true });
      }
    }
    return results;
  } finally {
    await app.close();
    await env.dispose();
  }
}
