import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../src/app.js";
import type { HttpServer } from "../src/http/http.server.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { errorCode, gql } from "./support/graphql-client.js";
import { firstPerClass, sampleImage } from "./support/images.js";
import {
  ingestAndIndexV2,
  SAMPLE_DIR,
  scratchDir,
  startTestDatabase,
  startTestS3,
  testConfig,
  testLogger,
} from "./support/services.js";

const QUEUED = 32;
const LIGHT_SEARCH = /* GraphQL */ `
  query Search($input: SearchSimilarInput!) { searchSimilar(input: $input) { indexSize } }
`;

describe("search input is refused at the edge, before admission", () => {
  let app: App;
  let server: HttpServer;
  let base64: string;
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    const [db, s3, scratch] = await Promise.all([startTestDatabase(), startTestS3(), scratchDir()]);
    cleanups.push(db.stop, s3.stop, scratch.remove);
    app = await createApp(
      testConfig({
        databaseUrl: db.url,
        s3,
        indexDir: path.join(scratch.dir, "idx"),
        // One search at a time, and room for every queued one: bad input must not wait behind them.
        // One inference thread leaves the event loop a core of the two a test machine may have.
        extra: {
          STARTUP_REBUILD: "never",
          SEARCH_CONCURRENCY: "1",
          SEARCH_QUEUE_LIMIT: "64",
          ORT_THREADS: "1",
        },
      }),
      testLogger,
    );
    server = await app.listen();
    await ingestAndIndexV2(
      app,
      firstPerClass(await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") }), 1),
    );
    base64 = (await sampleImage("held-back/steel_strip_xsdd/iron_sheet_ash/3005.jpg")).toString("base64");
  });

  afterAll(async () => {
    await app?.close();
    for (const c of cleanups.reverse()) await c();
  });

  it("refuses topK 0 (and other bad input) before the first of 32 queued real searches is answered", async () => {
    // Warm up: the first search and the first GraphQL request pay for lazy initialisation, which is not
    // what is measured here.
    await app.search.search({ image: { base64 }, imageType: "defect", topK: 3 });
    await gql(server.graphqlUrl, LIGHT_SEARCH, { input: { image: { base64 }, topK: 0 } });
    let finished = 0;
    // Called synchronously, each enters the admission queue at once: one runs, 32 wait behind it.
    const load = Array.from({ length: QUEUED + 1 }, () =>
      app.search.search({ image: { base64 }, imageType: "defect", topK: 3 }).finally(() => {
        finished++;
      }),
    );
    // Settled either way, so a failed assertion below leaves no unhandled rejection behind.
    const settled = Promise.allSettled(load);
    const t0 = performance.now();
    const topK0 = await gql(server.graphqlUrl, LIGHT_SEARCH, { input: { image: { base64 }, topK: 0 } });
    const ms = performance.now() - t0;
    expect(errorCode(topK0)).toBe("BAD_USER_INPUT");
    expect(topK0.errors?.[0]?.message).toBe("topK must be an integer from 1 to 100; got 0.");
    // Answered before even the one admitted search: it did not wait in the queue. (Not a fixed number of
    // ms: on a loaded 2-core CI machine an at-once answer took 57 ms once, while waiting takes the whole
    // queue, checked against its drain time below.)
    expect(finished).toBe(0);
    // The other rules are refused at the edge too, each long before the queue drains.
    const bad: [string, Record<string, unknown>][] = [
      ["minScore is a cosine similarity", { image: { base64 }, minScore: 2 }],
      [
        "perGroup must be an integer from 1 to 10",
        { image: { base64 }, groupBy: "DEFECT_TYPE", perGroup: 11 },
      ],
      ["Give exactly one of", { image: { base64, galleryImageId: "1" } }],
      ["image.galleryImageId must be a positive integer id", { image: { galleryImageId: "0x10" } }],
    ];
    for (const [message, input] of bad) {
      const r = await gql(server.graphqlUrl, LIGHT_SEARCH, { input });
      expect({ input: Object.keys(input), code: errorCode(r) }).toEqual({
        input: Object.keys(input),
        code: "BAD_USER_INPUT",
      });
      expect(r.errors?.[0]?.message).toContain(message);
    }
    // The refusals did not wait for the queue: most of the searches were still waiting meanwhile.
    expect(finished).toBeLessThan(QUEUED / 2);
    // The service's own assertion also refuses before admission, for callers that skip the edge.
    const t1 = performance.now();
    await expect(
      app.search.search({ image: { base64 }, imageType: "defect", topK: 0 }),
    ).rejects.toMatchObject({
      code: "BAD_USER_INPUT",
    });
    const direct = performance.now() - t1;
    const answers = await settled;
    const drained = performance.now() - t0;
    expect(answers.every((a) => a.status === "fulfilled" && a.value.hits.length === 3)).toBe(true);
    // A refusal that waited for the queue would take about as long as its drain (33 searches one by one).
    expect(ms).toBeLessThan(drained / 4);
    expect(direct).toBeLessThan(drained / 4);
  });
});
