import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../src/app.js";
import type { AppConfig } from "../src/config/config.js";
import type { HttpServer } from "../src/http/http.server.js";
import { type DatasetImage, listDatasetImages } from "../src/ingest/dataset.reader.js";
import { errorCode, gql } from "./support/graphql-client.js";
import { firstPerClass } from "./support/images.js";
import { REPO_ROOT, SAMPLE_DIR, SHARED_PRESENT, startTestServers, testLogger } from "./support/services.js";

const TOKEN = "model-admin-token-0123456789";

/** `npm run models -- <args>` as a child process (tsx, like the npm script), against `url`. */
async function modelsCli(url: string, args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(REPO_ROOT, "src/cli/main.ts"),
      "models",
      ...args,
      "--url",
      url,
      "--token",
      TOKEN,
      "--json",
    ],
    { cwd: REPO_ROOT },
  );
  return stdout;
}

// With ../shared: SqueezeNet 1.1 (512-d) as the candidate of the shipped int8 MobileNetV2 (1280-d), so a
// different embedding dimension is covered. Without: the shipped model with letterboxing (another model id,
// other embeddings).
const CANDIDATE = SHARED_PRESENT
  ? { preset: "squeezenet1.1" }
  : { preset: "mobilenetv2-12-int8", resizeMode: "pad" };

const MODELS = /* GraphQL */ `
  query { models { modelId state dimension embedded galleryImages promotable notPromotableReason
    preparation { id status trigger progress { newlyEmbedded } } indexes { version imageType ready count } } }
`;
const REGISTER = /* GraphQL */ `
  mutation R($input: RegisterModelInput!) { registerModel(input: $input) { model { modelId state } preparation { id } } }
`;
const PROMOTE = /* GraphQL */ `
  mutation P($id: String!) { promoteModel(modelId: $id, reason: "test") { modelId previousModelId tookMs } }
`;
const ROLLBACK = /* GraphQL */ `mutation { rollbackModel(reason: "test") { modelId previousModelId tookMs } }`;
const COMPARE = /* GraphQL */ `
  query { compareModels { active { modelId queries p10 suggestionAccuracy perClass { label p10 } cvRawP10 }
    candidate { modelId queries p10 suggestionAccuracy perClass { label p10 } }
    shadow { queries overlapAt10 top1Agreement suggestionAgreement candidateP50Ms } } }
`;
const SEARCH = /* GraphQL */ `
  query S($input: SearchSimilarInput!) {
    searchSimilar(input: $input) { modelId hits { imageId score productCode defectCode } }
  }
`;

interface ModelRow {
  modelId: string;
  state: string;
  dimension: number;
  embedded: number;
  galleryImages: number;
  promotable: boolean;
  notPromotableReason: string | null;
  preparation: { id: string; status: string; trigger: string; progress: { newlyEmbedded: number } } | null;
  indexes: { version: string; imageType: string; ready: boolean; count: number }[];
}
interface Answer {
  modelId: string;
  hits: { imageId: string; score: number; productCode: string; defectCode: string | null }[];
}

const dot = (a: Float32Array, b: Float32Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
};

describe("model migration: a candidate model prepared beside the active one, compared, promoted and rolled back", () => {
  let app: App;
  let server: HttpServer;
  let config: AppConfig;
  let queries: DatasetImage[];
  let gallery: DatasetImage[];
  let activeId: string;
  let candidateId: string;
  const cleanups: (() => Promise<void>)[] = [];
  const models = async () =>
    (await gql<{ models: ModelRow[] }>(server.graphqlUrl, MODELS, {}, TOKEN)).data?.models ?? [];
  const searchOnce = async (image: DatasetImage) => {
    const base64 = (await readFile(image.path)).toString("base64");
    return gql<{ searchSimilar: Answer }>(server.graphqlUrl, SEARCH, {
      input: { image: { base64 }, imageType: "DEFECT", topK: 10, space: "RAW" },
    });
  };

  beforeAll(async () => {
    const servers = await startTestServers({
      indexDir: "index-cache",
      extra: {
        ADMIN_TOKEN: TOKEN,
        STARTUP_REBUILD: "never",
        MODEL_SHADOW_SHARE: "1",
        MODEL_REEMBED_SHARE: "1",
        ADAPTED_SPACE: "off",
      },
    });
    cleanups.push(servers.stop);
    gallery = firstPerClass(await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") }), 5);
    queries = firstPerClass(await listDatasetImages({ root: path.join(SAMPLE_DIR, "held-back") }), 1).filter(
      (q) => q.defectCode !== null,
    );
    config = servers.config;
    app = await createApp(config, testLogger);
    server = await app.listen();
    expect((await app.ingest.ingest(gallery)).failed).toBe(0);
    const t = await app.jobs.start({
      targets: [
        { version: "v2", imageType: "defect" },
        { version: "v2", imageType: "normal" },
      ],
      trigger: "admin",
    });
    expect((await app.jobs.untilDone(t.id)).error).toBeNull();
    activeId = app.models.active().modelId;
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    for (const c of cleanups.reverse()) await c();
  });

  it("registers the candidate and prepares it in the background: every image embedded, its own indexes built, nothing served from it", async () => {
    const [seeded] = await models();
    expect(seeded).toMatchObject({ modelId: activeId, state: "ACTIVE" });
    const bad = await gql(server.graphqlUrl, REGISTER, { input: { preset: "resnet" } }, TOKEN);
    expect(errorCode(bad)).toBe("BAD_USER_INPUT");
    const unauth = await gql(server.graphqlUrl, REGISTER, { input: CANDIDATE });
    expect(errorCode(unauth)).toBe("UNAUTHENTICATED");

    const reg = await gql<{
      registerModel: { model: { modelId: string; state: string }; preparation: { id: string } };
    }>(server.graphqlUrl, REGISTER, { input: CANDIDATE }, TOKEN);
    expect(reg.errors).toBeUndefined();
    candidateId = reg.data?.registerModel.model.modelId as string;
    expect(candidateId).not.toBe(activeId);
    expect(reg.data?.registerModel.model.state).toBe("CANDIDATE");
    // Not promotable before its indexes exist.
    const early = await gql(server.graphqlUrl, PROMOTE, { id: candidateId }, TOKEN);
    const task = await app.jobs.untilDone(reg.data?.registerModel.preparation.id as string);
    expect(task.error).toBeNull();
    expect(task.trigger).toBe("candidate");
    expect(["MODEL_NOT_READY", "no error"]).toContain(errorCode(early));
    if (errorCode(early) === "no error") throw new Error("promoted before its preparation ended");
    await app.replica.sync();

    const listed = JSON.parse(await modelsCli(server.graphqlUrl, ["status"])) as ModelRow[];
    const candidate = listed.find((m) => m.modelId === candidateId) as ModelRow;
    expect(candidate.state).toBe("CANDIDATE");
    expect(candidate.embedded).toBe(gallery.length);
    expect(candidate.galleryImages).toBe(gallery.length);
    expect(candidate.preparation?.progress.newlyEmbedded).toBe(gallery.length);
    expect(candidate.indexes.every((i) => i.ready)).toBe(true);
    expect(candidate.promotable).toBe(true);
    if (SHARED_PRESENT) expect(candidate.dimension).toBe(512);
    // Searches still answer with the active model.
    const answer = await searchOnce(queries[0] as DatasetImage);
    expect(answer.data?.searchSimilar.modelId).toBe(activeId);
  }, 120_000);

  it("shadow traffic records what a direct computation of both models' top-10 gives for the same queries", async () => {
    await app.shadow.idle();
    const earlier = (await app.modelMigration.shadow()).find((s) => s.candidateModelId === candidateId);
    const before = earlier?.queries ?? 0;
    const expected: { overlap: number; top1: boolean }[] = [];
    // Every gallery defect image with its labels and both models' stored embeddings.
    const rows = gallery.filter((g) => g.defectCode !== null);
    const all = await app.repository.listGalleryPage({
      imageType: "defect",
      modelId: activeId,
      afterImageId: 0,
      limit: 10_000,
    });
    const byModel = async (modelId: string) =>
      app.repository.getEmbeddings(
        all.map((r) => r.imageId),
        modelId,
      );
    const [ea, ec] = [await byModel(activeId), await byModel(candidateId)];
    const top10 = (q: Float32Array, stored: Map<number, Float32Array>) =>
      all
        .map((r) => ({ r, s: dot(q, stored.get(r.imageId) as Float32Array) }))
        .sort((a, b) => b.s - a.s)
        .slice(0, 10)
        .map((x) => x.r);
    for (const q of queries) {
      const answered = await searchOnce(q);
      expect(answered.errors).toBeUndefined();
      await app.shadow.idle();
      const bytes = await readFile(q.path);
      const qa = (await app.models.get(activeId)?.embedder.embedOne(bytes))?.embedding as Float32Array;
      const qc = (await app.models.get(candidateId)?.embedder.embedOne(bytes))?.embedding as Float32Array;
      const ta = top10(qa, ea);
      const tc = top10(qc, ec);
      const shared = ta.filter((r) => tc.some((c) => c.imageId === r.imageId)).length;
      const cls = (r: (typeof all)[number]) => `${r.productCode}/${r.defectCode}`;
      expected.push({
        overlap: shared / 10,
        top1: cls(ta[0] as (typeof all)[number]) === cls(tc[0] as (typeof all)[number]),
      });
    }
    const summary = (await app.modelMigration.shadow()).find((s) => s.candidateModelId === candidateId);
    expect(summary?.queries).toBe(before + queries.length);
    // The recorded sums over these queries (the summary's means, less what was recorded before them).
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const recorded = (mean: number | null | undefined, was: number | null | undefined) =>
      (mean ?? 0) * (summary?.queries ?? 0) - (was ?? 0) * before;
    expect(recorded(summary?.overlapAt10, earlier?.overlapAt10)).toBeCloseTo(
      sum(expected.map((e) => e.overlap)),
      6,
    );
    expect(recorded(summary?.top1Agreement, earlier?.top1Agreement)).toBeCloseTo(
      sum(expected.map((e) => (e.top1 ? 1 : 0))),
      6,
    );
    const cmp = await gql<{
      compareModels: {
        active: { modelId: string; queries: number; p10: number; perClass: unknown[] };
        candidate: { modelId: string; queries: number; p10: number };
        shadow: { queries: number } | null;
      };
    }>(server.graphqlUrl, COMPARE, {}, TOKEN);
    expect(cmp.errors).toBeUndefined();
    const c = cmp.data?.compareModels;
    expect(c?.active.modelId).toBe(activeId);
    expect(c?.candidate.modelId).toBe(candidateId);
    expect(c?.active.queries).toBe(rows.length);
    expect(c?.candidate.queries).toBe(rows.length);
    expect(c?.active.perClass.length).toBeGreaterThan(1);
    expect(c?.shadow?.queries).toBe(summary?.queries);
  }, 120_000);

  it("promotes and rolls back in one step each while searches run from another client: none fails, each answer ranked by one model", async () => {
    const seen: (Answer & { query: DatasetImage })[] = [];
    const failures: string[] = [];
    let stop = false;
    const client = (async () => {
      for (let i = 0; !stop; i++) {
        const query = queries[i % queries.length] as DatasetImage;
        const r = await searchOnce(query);
        if (r.errors) failures.push(JSON.stringify(r.errors));
        else seen.push({ ...(r.data?.searchSimilar as Answer), query });
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const tasksBefore = (await app.jobs.list()).length;
    const promoted = await gql<{
      promoteModel: { modelId: string; previousModelId: string; tookMs: number };
    }>(server.graphqlUrl, PROMOTE, { id: candidateId }, TOKEN);
    expect(promoted.errors).toBeUndefined();
    expect(promoted.data?.promoteModel).toMatchObject({ modelId: candidateId, previousModelId: activeId });
    expect((await searchOnce(queries[0] as DatasetImage)).data?.searchSimilar.modelId).toBe(candidateId);
    expect(app.readiness().ready).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    // The rollback from the command line.
    const rolled = JSON.parse(await modelsCli(server.graphqlUrl, ["rollback", "--reason", "test"]));
    expect(rolled).toMatchObject({ modelId: activeId, previousModelId: candidateId });
    expect((await searchOnce(queries[0] as DatasetImage)).data?.searchSimilar.modelId).toBe(activeId);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await client;
    expect(failures).toEqual([]);
    expect(new Set(seen.map((s) => s.modelId))).toEqual(new Set([activeId, candidateId]));
    // Neither step re-embedded or rebuilt anything.
    expect((await app.jobs.list()).length).toBe(tasksBefore);

    // Each answer's scores are the cosine similarities of one model's embeddings: the query's and every hit's.
    const queryEmbeddings = new Map<string, Float32Array>();
    for (const s of seen.slice(0, 60)) {
      const k = `${s.modelId}|${s.query.path}`;
      let q = queryEmbeddings.get(k);
      if (!q) {
        q = (await app.models.get(s.modelId)?.embedder.embedOne(await readFile(s.query.path)))
          ?.embedding as Float32Array;
        queryEmbeddings.set(k, q);
      }
      const stored = await app.repository.getEmbeddings(
        s.hits.map((h) => Number(h.imageId)),
        s.modelId,
      );
      for (const h of s.hits)
        expect(dot(q, stored.get(Number(h.imageId)) as Float32Array)).toBeCloseTo(h.score, 4);
    }
  }, 120_000);

  it("keeps the operator's decision across a restart, and retires the candidate for good", async () => {
    const promoted = await gql(server.graphqlUrl, PROMOTE, { id: candidateId }, TOKEN);
    expect(promoted.errors).toBeUndefined();
    await app.close();
    app = await createApp(config, testLogger);
    server = await app.listen();
    expect(app.models.active().modelId).toBe(candidateId);
    expect((await searchOnce(queries[0] as DatasetImage)).data?.searchSimilar.modelId).toBe(candidateId);
    // The active model cannot be retired; the previous one can, and then rollback has nowhere to go.
    expect(
      errorCode(
        await gql(server.graphqlUrl, `mutation { retireModel(modelId: "${candidateId}") }`, {}, TOKEN),
      ),
    ).toBe("BAD_USER_INPUT");
    await gql(server.graphqlUrl, ROLLBACK, {}, TOKEN);
    expect(app.models.active().modelId).toBe(activeId);
    const retired = await gql(
      server.graphqlUrl,
      `mutation { retireModel(modelId: "${candidateId}") }`,
      {},
      TOKEN,
    );
    expect(retired.errors).toBeUndefined();
    expect(app.models.get(candidateId)).toBeUndefined();
    expect((await models()).find((m) => m.modelId === candidateId)?.state).toBe("RETIRED");
    expect(await app.repository.getEmbeddings([1, 2, 3], candidateId)).toEqual(new Map());
    expect(errorCode(await gql(server.graphqlUrl, ROLLBACK, {}, TOKEN))).toBe("NOT_FOUND");
  }, 120_000);
});
