import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gql } from "./support/graphql-client.js";
import { type ReplicaProcess, startReplica } from "./support/replica-process.js";
import {
  REPO_ROOT,
  SHIPPED_MODELS_DIR,
  scratchDir,
  startTestDatabase,
  startTestS3,
} from "./support/services.js";

const TOKEN = "prep-admin-token-0123456789";
const MODELS = /* GraphQL */ `
  query { models { modelId state embedded galleryImages
    preparation { status attempt progress { total newlyEmbedded } error } } }
`;
const REGISTER = /* GraphQL */ `
  mutation { registerModel(input: { preset: "mobilenetv2-12-int8", resizeMode: "pad" }) { model { modelId } preparation { id } } }
`;

interface ModelRow {
  modelId: string;
  state: string;
  embedded: number;
  galleryImages: number;
  preparation: {
    status: string;
    attempt: number;
    progress: { total: number; newlyEmbedded: number };
    error: string | null;
  } | null;
}

/**
 * A candidate's preparation survives a crash: the replica re-embedding the gallery is killed halfway, and the
 * replica that takes the task over embeds only the images still missing (embeddings are stored per step).
 */
describe("candidate preparation killed halfway resumes and embeds only what is missing", () => {
  let stopServers: () => Promise<void>;
  let env: (name: string, extra?: Record<string, string>) => Record<string, string>;
  let sql: pg.Client;
  const running: ReplicaProcess[] = [];

  beforeAll(async () => {
    const [db, s3, scratch] = await Promise.all([startTestDatabase(), startTestS3(), scratchDir()]);
    stopServers = async () => {
      await Promise.all([db.stop(), s3.stop()]);
      await scratch.remove();
    };
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    env = (name, extra = {}) => ({
      NODE_ENV: "test",
      LOG_LEVEL: "info",
      DATABASE_URL: db.url,
      S3_ENDPOINT: s3.endpoint,
      S3_ACCESS_KEY: s3.accessKey,
      S3_SECRET_KEY: s3.secretKey,
      S3_BUCKET: "prep-test",
      MODELS_DIR: SHIPPED_MODELS_DIR,
      SAMPLE_DIR: path.join(REPO_ROOT, "samples", "xsdd"),
      INDEX_CACHE_DIR: path.join(scratch.dir, `cache-${name}`),
      ADMIN_TOKEN: TOKEN,
      REPLICA_ID: name,
      STATE_POLL_MS: "500",
      REPLICA_STALE_MS: "3000",
      ADAPTED_SPACE: "off",
      ORT_THREADS: "1",
      ...extra,
    });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(running.map((r) => r.kill()));
    await sql?.end();
    await stopServers?.();
  }, 60_000);

  const storedFor = async (modelId: string) =>
    Number(
      (await sql.query("select count(*)::int as n from image_embeddings where model_id = $1", [modelId]))
        .rows[0]?.n,
    );

  it("a second replica finishes the preparation the first was killed in, re-embedding none it had stored", async () => {
    // Slow on purpose (10% of wall time), so the kill lands between two stored steps.
    const a = await startReplica("prep-a", env("prep-a", { MODEL_REEMBED_SHARE: "0.1" }), [
      "--with-sample-gallery",
    ]);
    running.push(a);
    await a.waitReady();
    const reg = await gql<{ registerModel: { model: { modelId: string } } }>(
      a.graphqlUrl,
      REGISTER,
      {},
      TOKEN,
    );
    expect(reg.errors, a.output().slice(-2000)).toBeUndefined();
    const candidate = reg.data?.registerModel.model.modelId as string;
    const gallery = Number((await sql.query("select count(*)::int as n from images")).rows[0]?.n);
    expect(gallery).toBe(210);

    const until = Date.now() + 60_000;
    while ((await storedFor(candidate)) === 0 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 100));
    await a.kill();
    const kept = await storedFor(candidate);
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(gallery);

    const b = await startReplica("prep-b", env("prep-b", { MODEL_REEMBED_SHARE: "1" }));
    running.push(b);
    await b.waitReady();
    let row: ModelRow | undefined;
    const done = Date.now() + 90_000;
    for (;;) {
      const models = (await gql<{ models: ModelRow[] }>(b.graphqlUrl, MODELS, {}, TOKEN)).data?.models ?? [];
      row = models.find((m) => m.modelId === candidate);
      if (row?.preparation?.status === "SUCCEEDED" || row?.preparation?.status === "FAILED") break;
      if (Date.now() > done)
        throw new Error(`preparation not done: ${JSON.stringify(row)}\n${b.output().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(row?.preparation?.status, row?.preparation?.error ?? "").toBe("SUCCEEDED");
    // The task says why its first attempt ended.
    expect(row?.preparation?.error).toMatch(/prep-a/);
    expect(row?.preparation?.attempt).toBeGreaterThanOrEqual(2);
    // The retry embedded exactly the images the killed replica had not stored.
    expect(row?.preparation?.progress.newlyEmbedded).toBe(gallery - kept);
    expect(await storedFor(candidate)).toBe(gallery);
    expect(row?.embedded).toBe(gallery);
  }, 240_000);
});
