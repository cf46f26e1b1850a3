import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../src/app.js";
import type { AppConfig } from "../src/config/config.js";
import type { DatasetImage } from "../src/ingest/dataset.reader.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { expandQuery } from "../src/search/search.service.js";
import { firstPerClass } from "./support/images.js";
import { ingestAndIndexV2, SAMPLE_DIR, startTestServers, testLogger } from "./support/services.js";

describe("adapted space: learned from the gallery's labels, persisted, reloaded, invalidated", () => {
  let servers: Awaited<ReturnType<typeof startTestServers>>;
  let config: AppConfig;
  let app: App;
  let queries: DatasetImage[];

  const topTen = async (a: App, image: DatasetImage, space: "raw" | "adapted") => {
    const base64 = (await readFile(image.path)).toString("base64");
    return a.search.search({ image: { base64 }, imageType: "defect", topK: 10, space });
  };

  beforeAll(async () => {
    servers = await startTestServers();
    config = servers.config;
    // 7 classes x 25 real steel-strip images of the shipped X-SDD sample (runs with or without ../shared):
    // big enough to cross-validate, small enough to ingest fast.
    const gallery = firstPerClass(await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") }), 25);
    queries = firstPerClass(await listDatasetImages({ root: path.join(SAMPLE_DIR, "held-back") }), 1);
    app = await createApp(config, testLogger, { initialiseIndexes: false });
    await ingestAndIndexV2(app, gallery);
  }, 600_000);

  afterAll(async () => {
    await app?.close();
    await servers?.stop();
  });

  it("fits a projection, persists it beside the adapted index, names it in the manifest and says why in status", async () => {
    const state = app.matchers.get("v2")?.state("defect");
    expect(state?.adaptedSpace.served).toBe("adapted");
    expect(state?.adaptedSpace.reason).toMatch(/cross-validation .* raises P@10/);
    expect(state?.adaptedSpace.cvAdaptedP10 ?? 0).toBeGreaterThan(state?.adaptedSpace.cvRawP10 ?? 1);
    const dir = path.join(app.models.active().cacheDir, "adapted", "v2", "defect");
    const manifest = JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8"));
    expect(manifest.space).toBe("adapted");
    expect(manifest.projection.file).toBe("projection.json");
    expect(manifest.projection.trainingFingerprint).toBe(state?.adaptedSpace.trainingFingerprint);
    expect(existsSync(path.join(dir, manifest.projection.file))).toBe(true);
    // The normal index is empty here: nothing to adapt, and status still says why.
    expect(app.matchers.get("v2")?.state("normal").adaptedSpace.reason.length).toBeGreaterThan(10);
  });

  it("lets each request choose its space, and every hit says which space ranked it", async () => {
    const q = queries[0] as DatasetImage;
    const adapted = await topTen(app, q, "adapted");
    const raw = await topTen(app, q, "raw");
    expect(adapted.space).toBe("adapted");
    expect(adapted.hits.every((h) => h.space === "adapted")).toBe(true);
    expect(raw.space).toBe("raw");
    expect(raw.hits.every((h) => h.space === "raw")).toBe(true);
    expect(adapted.hits.map((h) => h.imageId)).not.toEqual(raw.hits.map((h) => h.imageId));
    expect(adapted.suggestion?.defectCode).toBe(q.defectCode);
    expect(adapted.suggestion?.share ?? 0).toBeGreaterThan(0.5);
  });

  it("answers with the same top-K after a restart that reloads the persisted projection", async () => {
    const before = await Promise.all(queries.map((q) => topTen(app, q, "adapted")));
    await app.close();
    app = await createApp(config, testLogger);
    await app.jobs.whenIdle();
    const state = app.matchers.get("v2")?.state("defect");
    expect(state?.source).toBe("loaded");
    expect(state?.adaptedSpace.served).toBe("adapted");
    const after = await Promise.all(queries.map((q) => topTen(app, q, "adapted")));
    after.forEach((r, i) => {
      const b = before[i];
      expect(r.hits.map((h) => h.imageId)).toEqual(b?.hits.map((h) => h.imageId));
      r.hits.forEach((h, k) => {
        expect(h.score).toBeCloseTo(b?.hits[k]?.score ?? Number.NaN, 6);
      });
    });
  }, 120_000);

  it("expands the query with its top hits when alpha-QE is on, exactly as the formula says", async () => {
    const q = queries[0] as DatasetImage;
    const bytes = await readFile(q.path);
    const plain = await topTen(app, q, "adapted");
    const { embedding } = await app.embedder.embedOne(bytes);
    const neighbours = await Promise.all(
      plain.hits.slice(0, 2).map(async (h) => ({
        vector: (await app.repository.getEmbedding(
          h.imageId as number,
          app.embedder.modelId,
        )) as Float32Array,
        score: h.score,
      })),
    );
    const expected = await app.matchers
      .get("v2")
      ?.search("defect", expandQuery(embedding, neighbours, 3), { topK: 10, space: "adapted" });
    const qe = await createApp(
      { ...config, adaptation: { ...config.adaptation, queryExpansion: { topN: 2, alpha: 3 } } },
      testLogger,
    );
    try {
      await qe.jobs.whenIdle();
      const expanded = await topTen(qe, q, "adapted");
      expect(expanded.hits.map((h) => h.imageId)).toEqual(expected?.matches.map((m) => m.entry.imageId));
      expanded.hits.forEach((h, i) => {
        expect(h.score).toBeCloseTo(expected?.matches[i]?.score ?? Number.NaN, 6);
      });
    } finally {
      await qe.close();
    }
  }, 120_000);

  it("treats a changed gallery label as a new training set: the persisted projection is not reused", async () => {
    const matcher = app.matchers.get("v2");
    const before = matcher?.state("defect").adaptedSpace.trainingFingerprint;
    const client = new pg.Client({ connectionString: servers.db.url });
    await client.connect();
    try {
      // Relabel one image as another defect type (as an inspector correcting a label would).
      await client.query(
        `update images set defect_type_id = (select min(defect_type_id) from defect_types where defect_type_id <> images.defect_type_id)
         where image_id = (select min(image_id) from images)`,
      );
    } finally {
      await client.end();
    }
    expect(await matcher?.loadPersisted("defect", "loaded", true)).toBe(false);
    await app.jobs.start({ targets: [{ version: "v2", imageType: "defect" }], trigger: "admin" });
    await app.jobs.whenIdle();
    const after = matcher?.state("defect").adaptedSpace.trainingFingerprint;
    expect(after).toBeTruthy();
    expect(after).not.toBe(before);
  }, 300_000);
});
