import { readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { IMAGE_TYPES } from "../../src/shared/types.js";
import { type BenchContext, realImages, since } from "../context.js";
import { type LoadResult, measureLoad, measureLoadUntil, multipartSearchBody, SEARCH } from "../http-load.js";
import { formatBytes } from "../memory.js";
import { paddedVectors, writePaddedIndex } from "../padded-index.js";

/** End-to-end figures at one gallery size. */
export interface HttpResult {
  /** Vectors in the defect index searched. */
  gallerySize: number;
  /** Real images among them (the rest synthetic, when padded). */
  realImages: number;
  factory: string;
  notRun?: string;
  /** Seconds to build and persist the padded index (padded sizes only). */
  prepareSeconds?: number;
  levels: LoadResult[];
  /**
   * Searches (multipart, concurrency 4) from the start of a second build of an index of the same size until
   * it is saved, published, activated and loaded, as a rebuild does after its embeddings (padded sizes, with
   * --http-during-rebuild).
   */
  duringRebuild?: {
    load: LoadResult;
    /** Seconds from the start of the build to the new index served. */
    rebuildSeconds: number;
  };
}

/** The HTTP part's output. */
export interface HttpBench {
  queryImage: { path: string; bytes: number; format: string };
  topK: number;
  durationSeconds: number;
  results: HttpResult[];
}

/** The query-split JPEG closest to 100 KB. */
async function pickQueryImage(ctx: BenchContext): Promise<string> {
  const candidates = (await realImages(ctx.opts.datasetsDir, "query", 100_000)).filter((i) =>
    /\.jpe?g$/i.test(i.path),
  );
  const sized = await Promise.all(
    candidates.map(async (c) => ({ path: c.path, size: (await stat(c.path)).size })),
  );
  sized.sort((a, b) => Math.abs(a.size - 100_000) - Math.abs(b.size - 100_000));
  const best = sized[0];
  if (!best) throw new Error("no JPEG query image in the datasets");
  return best.path;
}

/**
 * `searchSimilar` over HTTP: a scratch service (real gallery ingested and indexed, HTTP server in this
 * process) loaded by autocannon from a child process at each concurrency, with the real query image
 * closest to 100 KB sent as base64 in JSON and as a GraphQL multipart upload; then the same with the
 * defect index padded by synthetic vectors to each `--http-sizes` size.
 */
export async function benchHttp(ctx: BenchContext): Promise<HttpBench> {
  const { opts } = ctx;
  // INDEX_FACTORY as the service defaults (auto: Flat while small, the compressed ANN index when large).
  const env = await ctx.factory.create("bench_http", { MODEL_PRESET: opts.model });
  const app = await env.createApp();
  try {
    const gallery = await realImages(opts.datasetsDir, "gallery", opts.httpImages);
    ctx.log(`http: ingesting ${gallery.length} real gallery images`);
    await app.ingest.ingest(gallery);
    const queued = await app.jobs.start({
      targets: IMAGE_TYPES.map((t) => ({ version: "v2", imageType: t })),
      trigger: "admin",
    });
    const task = await app.jobs.untilDone(queued.id);
    if (task.status !== "succeeded") throw new Error(`rebuild failed: ${task.error}`);
    const server = await app.listen();
    const queryPath = opts.queryImage ?? (await pickQueryImage(ctx));
    const bytes = await readFile(queryPath);
    const topK = 10;
    const body = JSON.stringify({
      query: SEARCH,
      variables: { input: { image: { base64: bytes.toString("base64") }, imageType: "DEFECT", topK } },
    });
    const bodyFile = path.join(env.dir, "search-body.json");
    await writeFile(bodyFile, body);
    // The same search as a GraphQL multipart request: the image's bytes as a file part, no base64.
    const multipart = await multipartSearchBody(bytes, path.basename(queryPath), topK);
    const multipartFile = path.join(env.dir, "search-body.multipart");
    await writeFile(multipartFile, multipart.body);
    const encodings = {
      base64: { bodyFile },
      multipart: {
        bodyFile: multipartFile,
        contentType: multipart.contentType,
        headers: { "apollo-require-preflight": "true" },
      },
    } as const;
    const check = async () => {
      const res = await fetch(server.graphqlUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      const json = (await res.json()) as {
        data?: { searchSimilar?: { indexSize: number; hits: unknown[] } };
        errors?: unknown;
      };
      if (!json.data?.searchSimilar || json.data.searchSimilar.hits.length !== topK)
        throw new Error(`searchSimilar did not answer: ${JSON.stringify(json.errors ?? json).slice(0, 300)}`);
      return json.data.searchSimilar.indexSize;
    };
    const results: HttpResult[] = [];
    const matcher = app.matchers.get("v2");
    for (const size of [0, ...opts.httpSizes.filter((s) => s > 0)]) {
      let prepareSeconds: number | undefined;
      let factory = "Flat";
      const realCount = matcher?.state("defect").count ?? 0;
      if (size > 0) {
        ctx.log(`http: padding the defect index to ${size} vectors`);
        const t0 = performance.now();
        try {
          factory = (await writePaddedIndex(app, size, await ctx.real())).factory;
          if (!(await matcher?.loadPersisted("defect", "loaded", false)))
            throw new Error("padded index not loaded");
        } catch (e) {
          results.push({
            gallerySize: size,
            realImages: realCount,
            factory,
            notRun: `failed: ${(e as Error).message}`,
            levels: [],
          });
          continue;
        }
        prepareSeconds = since(t0) / 1000;
      }
      const indexSize = await check();
      ctx.log(
        `http: ${indexSize} vectors: warm-up, then c=${opts.concurrency.join(",")} for ${opts.duration} s each`,
      );
      await measureLoad({
        url: server.graphqlUrl,
        bodyFile,
        connections: 4,
        durationSeconds: Math.min(3, opts.duration),
      });
      const levels: LoadResult[] = [];
      for (const c of opts.concurrency) {
        for (const encoding of opts.encodings) {
          levels.push(
            await measureLoad({
              url: server.graphqlUrl,
              ...encodings[encoding],
              encoding,
              connections: c,
              durationSeconds: opts.duration,
            }),
          );
        }
      }
      let duringRebuild: HttpResult["duringRebuild"];
      if (size > 0 && prepareSeconds !== undefined && opts.httpDuringRebuild) {
        ctx.log(`http: ${size} vectors: c=4 searches while the same index is built again and swapped in`);
        // The padding's vectors are the benchmark's own synchronous work: made before the load starts.
        const padded = await paddedVectors(app, size, await ctx.real());
        const t1 = performance.now();
        const rebuilt = writePaddedIndex(app, size, await ctx.real(), { padded }).then(async () => {
          if (!(await matcher?.loadPersisted("defect", "loaded", false)))
            throw new Error("rebuilt padded index not loaded");
          return since(t1) / 1000;
        });
        // Until the new index is served (in 30 s slices): the build, the save, the upload and the load.
        const [load, rebuildSeconds] = await Promise.all([
          measureLoadUntil(
            {
              url: server.graphqlUrl,
              ...encodings.multipart,
              encoding: "multipart",
              connections: 4,
              durationSeconds: 30,
            },
            rebuilt,
          ),
          rebuilt,
        ]);
        duringRebuild = { load, rebuildSeconds };
      }
      results.push({
        gallerySize: indexSize,
        realImages: Math.min(realCount, indexSize),
        factory,
        prepareSeconds,
        levels,
        duringRebuild,
      });
    }
    return {
      queryImage: {
        path: path.relative(process.cwd(), queryPath),
        bytes: bytes.length,
        format: `JPEG, ${formatBytes(bytes.length)}`,
      },
      topK,
      durationSeconds: opts.duration,
      results,
    };
  } finally {
    await app.close();
    await env.dispose();
  }
}
