import { createHash } from "node:crypto";
import { chmod, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type App, createApp } from "../src/app.js";
import type { AppConfig } from "../src/config/config.js";
import { folderClosedToOthers } from "../src/db/embedded-postgres.js";
import { gql, SEARCH, type SearchAnswer } from "./support/graphql-client.js";
import { REPO_ROOT, scratchDir, startTestServers, testLogger } from "./support/services.js";

/**
 * What `npm start -- --with-sample-gallery` does on a plain clone: no MODELS_DIR, no SAMPLE_DIR, nothing
 * from ../shared. (The servers are the test's; .ci/run also runs the real command from a fresh clone.)
 */
describe("first run on what ships: the default model and the sample gallery", () => {
  let servers: Awaited<ReturnType<typeof startTestServers>>;
  let config: AppConfig;
  let app: App | undefined;
  beforeAll(async () => {
    // An empty MODELS_DIR means unset: the default, `models`, where the model ships.
    servers = await startTestServers({
      indexDir: "index-cache",
      extra: { MODELS_DIR: "", STARTUP_REBUILD: "if-needed" },
    });
    config = servers.config;
  });
  afterAll(async () => {
    await app?.close();
    await servers?.stop();
  });

  it("starts on the shipped model, imports and indexes the sample gallery, and a held-back image finds its own defect type at rank 1 over HTTP", async () => {
    expect(config.model.path).toBe(path.join(REPO_ROOT, "models", "mobilenetv2-12-int8", "model.onnx"));
    app = await createApp(config, testLogger, { loadSampleGallery: true });
    expect(app.embedder.modelId).toMatch(/^mobilenetv2-12-int8@025ec4d51a07\./);
    expect(app.sampleGallery?.summary).toMatchObject({ total: 210, imported: 210, skipped: 0, failed: 0 });
    expect(app.matchers.get("v2")?.state("defect")).toMatchObject({ ready: true, count: 210 });

    // The image the startup banner and the README's quick start search with.
    const example = app.sampleGallery?.exampleQueryImage ?? "";
    expect(example).toBe(
      path.join("samples", "xsdd", "held-back", "steel_strip_xsdd", "finishing_roll_printing", "6144.jpg"),
    );
    const server = await app.listen();
    const r = await gql<SearchAnswer>(server.url, SEARCH, {
      input: {
        image: { base64: (await readFile(path.join(REPO_ROOT, example))).toString("base64") },
        topK: 5,
      },
    });
    expect(r.errors).toBeUndefined();
    const hits = r.data?.searchSimilar.hits ?? [];
    expect(hits).toHaveLength(5);
    expect(hits[0]).toMatchObject({
      rank: 1,
      productCode: "steel_strip_xsdd",
      defectCode: "finishing_roll_printing",
    });
    // Held back means not in the gallery: no hit has the query's own bytes.
    const own = createHash("sha256")
      .update(await readFile(path.join(REPO_ROOT, example)))
      .digest("hex");
    expect(hits.map((h) => h.contentSha256)).not.toContain(own);

    // The start does not wait for the sample's thumbnails: the background backfill makes them once the
    // server listens, and then the hit's thumbnail is in the bucket.
    expect(app.sampleGallery?.summary.thumbnails).toMatchObject({ made: 0, failed: 0 });
    await vi.waitFor(async () => expect(await app?.repository.imagesWithoutThumbnail(0, 1)).toEqual([]), {
      timeout: 60_000,
      interval: 200,
    });
    const again = await gql<SearchAnswer>(server.url, SEARCH, {
      input: {
        image: { base64: (await readFile(path.join(REPO_ROOT, example))).toString("base64") },
        topK: 1,
      },
    });
    const thumbnail = await fetch(again.data?.searchSimilar.hits[0]?.thumbnailUrl ?? "");
    expect(thumbnail.status).toBe(200);
    expect(thumbnail.headers.get("content-type")).toBe("image/jpeg");
  });

  it("imports nothing twice on a second start, and loads the persisted index instead of rebuilding", async () => {
    await app?.close();
    const before = new Date();
    app = await createApp(config, testLogger, { loadSampleGallery: true });
    expect(app.sampleGallery?.summary).toMatchObject({ total: 210, imported: 0, skipped: 210, failed: 0 });
    expect(await app.repository.countGallery("defect", app.embedder.modelId)).toEqual({
      total: 210,
      missing: 0,
    });
    // The first start's rebuild is in the deployment's history; this start queued none.
    const tasks = await app.jobs.list();
    expect(tasks.filter((t) => Date.parse(t.startedAt) >= before.getTime())).toHaveLength(0);
    expect(tasks).toHaveLength(1);
    expect(app.matchers.get("v2")?.state("defect")).toMatchObject({
      ready: true,
      count: 210,
      source: "loaded",
    });
  });
});

describe("the embedded PostgreSQL's data folder", () => {
  it("is refused up front, as root, under a folder the postgres user cannot traverse (a clone under /root)", async () => {
    const scratch = await scratchDir();
    try {
      const closed = path.join(scratch.dir, "home");
      await mkdir(path.join(closed, "clone", ".data"), { recursive: true });
      await chmod(closed, 0o700);
      await chmod(scratch.dir, 0o755);
      const dataDir = path.join(closed, "clone", ".data", "postgres");
      expect(await folderClosedToOthers(dataDir, 0)).toBe(closed);
      await chmod(closed, 0o755);
      expect(await folderClosedToOthers(dataDir, 0)).toBeUndefined();
      // Not root: the server runs as the user, who owns the folders.
      await chmod(closed, 0o700);
      expect(await folderClosedToOthers(dataDir, 1000)).toBeUndefined();
    } finally {
      await scratch.remove();
    }
  });
});
