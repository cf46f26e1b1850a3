import { readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../src/app.js";
import type { AppConfig } from "../src/config/config.js";
import type { DatasetImage } from "../src/ingest/dataset.reader.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import {
  DATASETS_DIR,
  ingestAndIndexV2,
  SAMPLE_DIR,
  SHARED_PRESENT,
  startTestServers,
  testLogger,
} from "./support/services.js";

/**
 * magnetic_tile of ../shared when present (1,076 gallery images, 71% normal, small defects: where the type
 * prior matters); else the shipped X-SDD sample with one class ingested as normal images (defect code
 * null), so the gallery holds both image types: real images, a constructed labelling.
 */
const DATA = SHARED_PRESENT ? "shared magnetic_tile" : "shipped xsdd sample, red_iron as normal";
const NORMAL_CLASS = "red_iron";
const asNormal = (img: DatasetImage): DatasetImage =>
  img.defectCode === NORMAL_CLASS ? { ...img, defectCode: null, imageType: "normal" } : img;
const load = async (split: "gallery" | "query") =>
  SHARED_PRESENT
    ? listDatasetImages({ root: path.join(DATASETS_DIR, "magnetic_tile"), split })
    : (
        await listDatasetImages({
          root: path.join(SAMPLE_DIR, split === "gallery" ? "gallery" : "held-back"),
        })
      ).map(asNormal);
/** Share of the hits with the query's product and defect type. */
const precision = (q: DatasetImage, hits: { productCode: string; defectCode: string | null }[]) =>
  hits.filter((h) => h.productCode === q.productCode && h.defectCode === q.defectCode).length / hits.length;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe(`searching both image types at once, imageType ALL (${DATA})`, () => {
  let servers: Awaited<ReturnType<typeof startTestServers>>;
  let config: AppConfig;
  let app: App;
  let gallery: DatasetImage[];
  let queries: DatasetImage[];

  const searchAll = async (a: App, image: DatasetImage, space: "raw" | "adapted" = "adapted") =>
    a.search.search({
      image: { base64: (await readFile(image.path)).toString("base64") },
      imageType: "all",
      topK: 10,
      space,
    });

  beforeAll(async () => {
    servers = await startTestServers();
    config = servers.config;
    [gallery, queries] = await Promise.all([load("gallery"), load("query")]);
    app = await createApp(config, testLogger, { initialiseIndexes: false });
    await ingestAndIndexV2(app, gallery);
  }, 600_000);

  afterAll(async () => {
    await app?.close();
    await servers?.stop();
  });

  it("stores each image's texture descriptor at ingestion, beside its embedding", async () => {
    const textureId = app.embedder.textureModelId;
    expect(textureId).toMatch(/#texture@591_quantized$/);
    expect(app.embedder.textureDimension).toBe(1152);
    const client = new pg.Client({ connectionString: servers.db.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        "select model_id, count(*)::int as n, min(dimension) as dmin, max(dimension) as dmax from image_embeddings group by model_id order by model_id",
      );
      expect(rows).toEqual([
        { model_id: app.embedder.modelId, n: gallery.length, dmin: 1280, dmax: 1280 },
        { model_id: textureId, n: gallery.length, dmin: 1152, dmax: 1152 },
      ]);
    } finally {
      await client.end();
    }
  });

  it("ranks both galleries in one list, each hit with its own type and space, and says whether a type prior ranks them", async () => {
    const status = app.matchers.get("v2")?.state("defect").adaptedSpace;
    // The gate's decision on magnetic_tile is close: its crack class sits at the per-class tolerance. One
    // machine served the adapted space; another (AMD EPYC, 2026-12-02, the landed code too) kept raw because
    // crack would drop from P@10 0.289 to 0.250. Either way the decision says why, and searches follow it.
    const servedAdapted = status?.served === "adapted";
    if (!servedAdapted) {
      expect(SHARED_PRESENT).toBe(true);
      expect(status?.reason).toMatch(/keeps raw: class \S+ would drop from P@10/);
    } else expect(status?.typePrior).toMatch(/cross-validation/);
    const adapted: number[] = [];
    const raw: number[] = [];
    let rightType = 0;
    for (const q of queries) {
      const r = await searchAll(app, q);
      expect(r.imageType).toBe("all");
      expect(r.hits.map((h) => h.rank)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      // The defect index is in the adapted space when the gate serves it; the normal one as its scope says.
      for (const h of r.hits)
        if (h.imageType === "defect") expect(h.space).toBe(servedAdapted ? "adapted" : "raw");
      if (r.hits[0]?.imageType === q.imageType) rightType++;
      adapted.push(precision(q, r.hits));
      const plain = await searchAll(app, q, "raw");
      // In the raw space ALL is a plain merge by cosine similarity.
      const scores = plain.hits.map((h) => h.score);
      expect(scores).toEqual([...scores].sort((x, y) => y - x));
      raw.push(precision(q, plain.hits));
    }
    expect(queries.length).toBeGreaterThan(30);
    console.log(
      `[type prior] ${DATA}: ${status?.typePrior}; held-out P@10 ALL raw ${mean(raw).toFixed(3)}, adapted ${mean(adapted).toFixed(3)}; top hit of the right type ${rightType}/${queries.length}`,
    );
    if (SHARED_PRESENT && !servedAdapted) {
      // Raw: ALL is the plain merge by cosine similarity, the same ranking as asking for raw.
      expect(mean(adapted)).toBeCloseTo(mean(raw), 10);
    } else if (SHARED_PRESENT) {
      // The texture prior is what lifts magnetic_tile's small defects (docs/evaluation.md, "Type prior: which descriptor, which shift").
      expect(status?.typePrior).toMatch(/raises merged P@10 .*texture/);
      expect(mean(adapted)).toBeGreaterThanOrEqual(0.85);
      expect(mean(adapted)).toBeGreaterThan(mean(raw) + 0.15);
    } else {
      expect(rightType).toBe(queries.length);
      expect(mean(adapted)).toBeGreaterThanOrEqual(mean(raw));
    }
  }, 120_000);

  it("answers ALL searches identically after a restart that reloads the persisted projection", async () => {
    // One at a time: admission control refuses more than its queue holds.
    const inTurn = async (a: App) => {
      const out = [];
      for (const q of queries) out.push(await searchAll(a, q));
      return out;
    };
    const before = await inTurn(app);
    await app.close();
    app = await createApp(config, testLogger);
    await app.jobs.whenIdle();
    expect(app.matchers.get("v2")?.state("defect").source).toBe("loaded");
    const after = await inTurn(app);
    after.forEach((r, i) => {
      expect(r.hits.map((h) => h.imageId)).toEqual(before[i]?.hits.map((h) => h.imageId));
    });
  }, 120_000);
});
