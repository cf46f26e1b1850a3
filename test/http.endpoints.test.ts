import { readFile } from "node:fs/promises";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.js";
import { thumbnailKey } from "../src/thumbnails/thumbnail.js";
import { backfillThumbnails } from "../src/thumbnails/thumbnail-backfill.js";
import { errorCode, type GqlResponse, gql, SEARCH, type SearchAnswer } from "./support/graphql-client.js";
import { startTestServers, testLogger } from "./support/services.js";
import { niceByThread } from "./support/threads.js";
import { startWebGallery, type WebGallery } from "./support/web-gallery.js";

const MAX_IMAGE_BYTES = 300_000;

/** A GraphQL multipart request (graphql-multipart-request-spec) with one file at `variables.input.image.file`. */
async function uploadSearch(
  url: string,
  file: Buffer,
  input: Record<string, unknown> = {},
  headers: Record<string, string> = { "apollo-require-preflight": "true" },
) {
  const form = new FormData();
  form.append(
    "operations",
    JSON.stringify({ query: SEARCH, variables: { input: { ...input, image: { file: null } } } }),
  );
  form.append("map", JSON.stringify({ 0: ["variables.input.image.file"] }));
  form.append("0", new Blob([new Uint8Array(file)]), "query.png");
  const res = await fetch(url, { method: "POST", body: form, headers });
  return { status: res.status, body: (await res.json()) as GqlResponse<SearchAnswer> };
}

/** The value of one Prometheus series (exact label set), or undefined when absent. */
function series(text: string, name: string, labels = ""): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ""} `));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

describe("HTTP endpoints: health, readiness, metrics, uploads, limits", () => {
  let web: WebGallery;
  const query = () => readFile(web.queries[0]?.path ?? "");

  beforeAll(async () => {
    web = await startWebGallery(12, { MAX_IMAGE_BYTES: String(MAX_IMAGE_BYTES) });
  });
  afterAll(async () => {
    await web?.stop();
  });

  it("answers /healthz always and /readyz 503 with a reason until the active indexes are served; no GraphiQL in production", async () => {
    const servers = await startTestServers({
      indexDir: "index-cache",
      extra: { STARTUP_REBUILD: "never", NODE_ENV: "production" },
    });
    const app = await createApp(servers.config, testLogger);
    try {
      const server = await app.listen();
      const health = await fetch(`${server.url}healthz`);
      expect(health.status).toBe(200);
      const notReady = await fetch(`${server.url}readyz`);
      expect(notReady.status).toBe(503);
      const body = (await notReady.json()) as { status: string; reasons: string[] };
      expect(body.status).toBe("not ready");
      expect(body.reasons.join(" ")).toMatch(/index v2\/defect is not served/);
      // Production: no IDE unless GRAPHIQL=true.
      expect((await fetch(`${server.url}graphiql`)).status).toBe(404);
      expect((await fetch(`${server.url}vendor/graphiql.min.js`)).status).toBe(404);
    } finally {
      await app.close();
      await servers.stop();
    }
    const ready = await fetch(`${web.url}readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "ready", reasons: [], activeVersion: "v2" });
  });

  it.runIf(process.platform === "linux" && (niceByThread().get(process.pid) ?? 0) < 10)(
    "once it serves, runs every thread but the event loop's at WORKER_THREAD_NICE (10)",
    async () => {
      // The main thread keeps the nice the run started with (0, unless run under `nice`). Threads started
      // since the last scan (libvips' workers, say) are lowered within a second.
      const base = niceByThread().get(process.pid) ?? 0;
      const deadline = Date.now() + 3000;
      let raised: [number, number][] = [];
      do {
        raised = [...niceByThread()].filter(([tid, nice]) => tid !== process.pid && nice < 10);
        if (raised.length > 0) await new Promise((r) => setTimeout(r, 200));
      } while (raised.length > 0 && Date.now() < deadline);
      expect(raised).toEqual([]);
      expect(niceByThread().get(process.pid)).toBe(base);
      expect(niceByThread().size).toBeGreaterThan(4);
    },
  );

  it("answers GraphQL with Cache-Control: no-store (answers carry presigned URLs), on POST and GET", async () => {
    const post = await fetch(web.graphqlUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ __typename }" }),
    });
    expect(post.status).toBe(200);
    expect(post.headers.get("cache-control")).toBe("no-store");
    const get = await fetch(`${web.graphqlUrl}?query=${encodeURIComponent("{ __typename }")}`, {
      headers: { "apollo-require-preflight": "true" },
    });
    expect(get.status).toBe(200);
    expect(get.headers.get("cache-control")).toBe("no-store");
  });

  it("takes the query image as a multipart upload, ranking exactly as base64 does", async () => {
    const bytes = await query();
    const up = await uploadSearch(web.graphqlUrl, bytes, { topK: 5 });
    expect(up.status).toBe(200);
    const b64 = await gql<SearchAnswer>(web.graphqlUrl, SEARCH, {
      input: { image: { base64: bytes.toString("base64") }, topK: 5 },
    });
    const hits = up.body.data?.searchSimilar.hits ?? [];
    expect(hits).toHaveLength(5);
    expect(hits.map((h) => [h.imageId, h.score])).toEqual(
      b64.data?.searchSimilar.hits.map((h) => [h.imageId, h.score]),
    );
  });

  it("keeps POST / answering GraphQL for clients of the old standalone server", async () => {
    const r = await gql<{ status: { activeVersion: string } }>(web.url, "{ status { activeVersion } }");
    expect(r.data?.status.activeVersion).toBe("V2");
  });

  it("refuses a multipart request without a preflight header (CSRF) before reading the file", async () => {
    const r = await uploadSearch(web.graphqlUrl, await query(), {}, {});
    expect(r.status).toBe(400);
    expect(errorCode(r.body)).toBe("BAD_REQUEST");
    expect(r.body.errors?.[0]?.message).toMatch(/Apollo-Require-Preflight/);
  });

  it("refuses uploads and JSON bodies over the limits with IMAGE_TOO_LARGE and HTTP 413", async () => {
    const big = await sharp({
      create: {
        width: 900,
        height: 900,
        channels: 3,
        background: "#808080",
        noise: { type: "gaussian", mean: 128, sigma: 60 },
      },
    })
      .png()
      .toBuffer();
    expect(big.length).toBeGreaterThan(MAX_IMAGE_BYTES);
    const up = await uploadSearch(web.graphqlUrl, big);
    expect(errorCode(up.body)).toBe("IMAGE_TOO_LARGE");
    expect(up.body.errors?.[0]?.message).toMatch(/300000 bytes/);

    const hugeJson = JSON.stringify({
      query: SEARCH,
      variables: { input: { image: { base64: "A".repeat(800_000) } } },
    });
    const res = await fetch(web.graphqlUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: hugeJson,
    });
    expect(res.status).toBe(413);
    expect(errorCode((await res.json()) as GqlResponse)).toBe("IMAGE_TOO_LARGE");
    // The service is still there.
    expect((await uploadSearch(web.graphqlUrl, await query())).status).toBe(200);
  });

  it("answers a non-image upload with INVALID_IMAGE_FORMAT", async () => {
    const r = await uploadSearch(web.graphqlUrl, Buffer.from("these are inspection notes, not a photo"));
    expect(errorCode(r.body)).toBe("INVALID_IMAGE_FORMAT");
  });

  it("exposes Prometheus metrics that move with searches, errors, embeddings and rebuilds", async () => {
    const scrape = async () => {
      const res = await fetch(`${web.url}metrics`);
      expect(res.headers.get("content-type")).toMatch(/text\/plain/);
      return res.text();
    };
    const before = await scrape();
    const ok = (t: string) => series(t, "defect_lens_search_requests_total", 'outcome="ok",code=""') ?? 0;
    const invalid = (t: string) =>
      series(t, "defect_lens_search_requests_total", 'outcome="error",code="INVALID_IMAGE_FORMAT"') ?? 0;
    const inferenceCount = (t: string) =>
      series(t, "defect_lens_search_stage_duration_seconds_count", 'stage="inference"') ?? 0;
    const embedded = (t: string) => series(t, "defect_lens_embeddings_computed_total") ?? 0;

    await uploadSearch(web.graphqlUrl, await query());
    await uploadSearch(web.graphqlUrl, Buffer.from("not an image"));
    const after = await scrape();

    expect(ok(after)).toBe(ok(before) + 1);
    expect(invalid(after)).toBe(invalid(before) + 1);
    expect(inferenceCount(after)).toBe(inferenceCount(before) + 1);
    expect(embedded(after)).toBe(embedded(before) + 1);
    for (const stage of ["fetch", "decode", "inference", "search", "total"])
      expect(after).toContain(
        `defect_lens_search_stage_duration_seconds_bucket{le="0.001",stage="${stage}"}`,
      );
    expect(series(after, "defect_lens_index_images", 'version="v2",image_type="defect"')).toBe(
      new Set(web.gallery.map((g) => g.path)).size - 0,
    );
    expect(series(after, "defect_lens_rebuilds_total", 'status="succeeded"')).toBeGreaterThanOrEqual(2);
    expect(after).toMatch(/defect_lens_rebuild_duration_seconds_count\{status="succeeded"\} \d+/);
    expect(after).toMatch(
      /defect_lens_index_built_timestamp_seconds\{version="v2",image_type="defect"\} \d+/,
    );
    expect(after).toContain("defect_lens_nodejs_eventloop_lag_seconds");
    expect(after).toContain("defect_lens_process_resident_memory_bytes");
    expect(after).toMatch(
      /defect_lens_http_request_duration_seconds_count\{method="POST",route="\/graphql",status_code="200"\} \d+/,
    );
  });

  it("serves presigned JPEG thumbnails of at most 256 pixels a side, under their own keys", async () => {
    const r = await uploadSearch(web.graphqlUrl, await query(), { topK: 3 });
    const hit = r.body.data?.searchSimilar.hits[0];
    expect(hit?.thumbnailUrl).toContain(thumbnailKey(hit?.contentSha256 ?? ""));
    const res = await fetch(hit?.thumbnailUrl ?? "");
    expect(res.status).toBe(200);
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    expect(meta.format).toBe("jpeg");
    expect(Math.max(meta.width ?? 0, meta.height ?? 0)).toBeLessThanOrEqual(256);
  });

  it("lists products and defect types with counts, and pages through the gallery", async () => {
    type Labels = {
      products: { productCode: string; imageCount: number; defectCount: number }[];
      defectTypes: { defectCode: string; imageCount: number }[];
    };
    const labels = (
      await gql<Labels>(
        web.graphqlUrl,
        "{ products { productCode imageCount defectCount } defectTypes { defectCode imageCount } }",
      )
    ).data;
    const distinct = new Set(web.gallery.map((g) => g.path)).size;
    expect(labels?.products).toEqual([
      { productCode: "steel_strip_xsdd", imageCount: distinct, defectCount: distinct },
    ]);
    expect(labels?.defectTypes.reduce((n, d) => n + d.imageCount, 0)).toBe(distinct);

    const code = labels?.defectTypes[0]?.defectCode ?? "";
    const PAGE = /* GraphQL */ `query($f: GalleryFilter, $after: ID) {
      galleryImages(filter: $f, first: 5, after: $after) { total nextCursor images { imageId defectCode thumbnailUrl } } }`;
    type Page = {
      galleryImages: {
        total: number;
        nextCursor: string | null;
        images: { imageId: string; defectCode: string }[];
      };
    };
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const page: Page | null | undefined = (
        await gql<Page>(web.graphqlUrl, PAGE, { f: { defectCode: code }, after })
      ).data;
      expect(page?.galleryImages.images.every((i) => i.defectCode === code)).toBe(true);
      seen.push(...(page?.galleryImages.images.map((i) => i.imageId) ?? []));
      after = page?.galleryImages.nextCursor ?? null;
    } while (after !== null);
    expect(seen.length).toBe(labels?.defectTypes[0]?.imageCount);
    expect(new Set(seen).size).toBe(seen.length);
    expect(errorCode(await gql(web.graphqlUrl, "{ galleryImages(first: 1000) { total } }"))).toBe(
      "BAD_USER_INPUT",
    );
  });

  it("backfills thumbnails that are missing, and only those", async () => {
    const { db } = web.app;
    await db.pool.query(
      "update images set thumbnail_key = null where image_id in (select image_id from images order by image_id limit 3)",
    );
    const first = await backfillThumbnails({
      repository: web.app.repository,
      blobStore: web.app.blobStore,
      logger: testLogger,
    });
    expect(first).toEqual({ made: 3, failed: 0 });
    const again = await backfillThumbnails({
      repository: web.app.repository,
      blobStore: web.app.blobStore,
      logger: testLogger,
    });
    expect(again).toEqual({ made: 0, failed: 0 });
  });

  it("sends security headers that let the page load images from object storage only", async () => {
    const res = await fetch(web.url);
    expect(res.status).toBe(200);
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain(`img-src 'self' data: blob: ${web.s3Origin}`);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
  });

  it("serves GraphiQL and its scripts from the service itself, with no CDN", async () => {
    const page = await (await fetch(`${web.url}graphiql`)).text();
    const scripts = [...page.matchAll(/src="([^"]+)"/g)].map((m) => m[1] ?? "");
    expect(scripts).toContain("/vendor/graphiql.min.js");
    for (const src of scripts) {
      expect(src.startsWith("/")).toBe(true);
      const res = await fetch(new URL(src, web.url));
      expect(res.status, src).toBe(200);
      expect((await res.text()).length).toBeGreaterThan(100);
    }
  });
});
