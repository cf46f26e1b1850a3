import { copyFile, mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMinioBlobStore } from "../src/storage/blob-store.js";
import { errorCode, gql } from "./support/graphql-client.js";
import { type ReplicaProcess, startReplica, startTcpRelay } from "./support/replica-process.js";
import { REPO_ROOT, SAMPLE_DIR, SHIPPED_MODELS_DIR, startTestServers } from "./support/services.js";

// Real replicas: child processes of `src/main.ts` on one PostgreSQL and one S3 server, with the shipped
// model and sample gallery. PostgreSQL is reached through a TCP relay so the test can take it away.
const TOKEN = "replica-admin-token-0123456789";
const BUCKET = "replicas-test";

const STATUS = /* GraphQL */ `
  query {
    status {
      replicaId
      activeVersion
      databaseReachable
      matcherVersionHistory { version reason setBy replicaId }
      replicas { id ready served { version imageType indexVersion } }
      indexes { version imageType ready count source checksum indexVersion activeIndexVersion }
      indexVersions { id version imageType count active checksum }
      rebuildTasks { id status attempt replicaId error trigger }
    }
  }
`;
interface StatusAnswer {
  status: {
    replicaId: string;
    activeVersion: string;
    databaseReachable: boolean;
    matcherVersionHistory: { version: string; reason: string; setBy: string; replicaId: string }[];
    replicas: {
      id: string;
      ready: boolean;
      served: { version: string; imageType: string; indexVersion: string }[];
    }[];
    indexes: {
      version: string;
      imageType: string;
      ready: boolean;
      count: number;
      source: string | null;
      checksum: string | null;
      indexVersion: string | null;
      activeIndexVersion: string | null;
    }[];
    indexVersions: {
      id: string;
      version: string;
      imageType: string;
      count: number;
      active: boolean;
      checksum: string;
    }[];
    rebuildTasks: {
      id: string;
      status: string;
      attempt: number;
      replicaId: string | null;
      error: string | null;
      trigger: string;
    }[];
  };
}
const SET_FLAG = /* GraphQL */ `
  mutation ($version: MatcherVersion!, $reason: String) {
    setMatcherVersion(version: $version, reason: $reason) { activeVersion }
  }
`;
const REBUILD = /* GraphQL */ `
  mutation { rebuildIndex(imageType: ALL, version: V2) { id status } }
`;
const ACTIVATE = /* GraphQL */ `
  mutation ($id: ID!) { activateIndexVersion(id: $id, reason: "test") { id active } }
`;
const SEARCH = /* GraphQL */ `
  query ($input: SearchSimilarInput!) { searchSimilar(input: $input) { version indexSize hits { rank } } }
`;

const SEARCH_IDS = /* GraphQL */ `
  query ($input: SearchSimilarInput!) { searchSimilar(input: $input) { hits { imageId } } }
`;

const status = async (r: ReplicaProcess) => {
  const res = await gql<StatusAnswer>(r.graphqlUrl, STATUS, {}, TOKEN);
  if (!res.data) throw new Error(`status failed on ${r.name}: ${JSON.stringify(res.errors)}`);
  return res.data.status;
};
const served = async (r: ReplicaProcess, imageType = "defect") =>
  (await status(r)).indexes.find((i) => i.version === "V2" && i.imageType === imageType.toUpperCase());
const embeddingsComputed = async (r: ReplicaProcess) => {
  const text = await (await fetch(`${r.url}metrics`)).text();
  return Number(/^defect_lens_embeddings_computed_total (\d+)/m.exec(text)?.[1] ?? "0");
};
/** Polls `check` every 100 ms until it is true; returns the ms it took; throws after `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - t0;
}

describe("replicas on one PostgreSQL and one S3 server", () => {
  let servers: Awaited<ReturnType<typeof startTestServers>>;
  let relay: Awaited<ReturnType<typeof startTcpRelay>>;
  let sql: pg.Pool;
  let queryImage: string;
  const running: ReplicaProcess[] = [];
  let env: (name: string) => Record<string, string>;

  const launch = async (name: string, args: string[] = []) => {
    const r = await startReplica(name, env(name), args);
    running.push(r);
    await r.waitReady(180_000);
    return r;
  };
  const search = (r: ReplicaProcess, version = "V2") =>
    gql<{ searchSimilar: { version: string; indexSize: number; hits: unknown[] } }>(r.graphqlUrl, SEARCH, {
      input: { image: { base64: queryImage }, topK: 3, version },
    });

  beforeAll(async () => {
    servers = await startTestServers({ scratchPrefix: "defect-lens-replicas-" });
    const { db, s3, dir } = servers;
    const dbUrl = new URL(db.url);
    relay = await startTcpRelay({ host: dbUrl.hostname, port: Number(dbUrl.port || 5432) });
    const viaRelay = new URL(db.url);
    viaRelay.hostname = "127.0.0.1";
    viaRelay.port = String(relay.port);
    sql = new pg.Pool({ connectionString: db.url, max: 2 });
    // A small V1 folder gallery ({product}_{defect}_*.jpg), so the matcher flag has two real matchers.
    const v1Dir = path.join(dir, "v1");
    await mkdir(v1Dir);
    const defects = path.join(SAMPLE_DIR, "gallery", "steel_strip_xsdd", "red_iron");
    for (const [i, f] of (await readdir(defects)).slice(0, 12).entries())
      await copyFile(path.join(defects, f), path.join(v1Dir, `steelstrip_rediron_${i}.jpg`));
    const held = path.join(SAMPLE_DIR, "held-back", "steel_strip_xsdd", "red_iron");
    queryImage = (await readFile(path.join(held, (await readdir(held))[0] as string))).toString("base64");
    env = (name) => ({
      NODE_ENV: "test",
      LOG_LEVEL: "info",
      DATABASE_URL: viaRelay.toString(),
      DB_QUERY_TIMEOUT_MS: "3000",
      S3_ENDPOINT: s3.endpoint,
      S3_ACCESS_KEY: s3.accessKey,
      S3_SECRET_KEY: s3.secretKey,
      S3_BUCKET: BUCKET,
      MODELS_DIR: SHIPPED_MODELS_DIR,
      SAMPLE_DIR: path.join(REPO_ROOT, "samples", "xsdd"),
      V1_GALLERY_DIR: v1Dir,
      INDEX_CACHE_DIR: path.join(dir, `cache-${name}`),
      ADMIN_TOKEN: TOKEN,
      REPLICA_ID: name,
      STATE_POLL_MS: "500",
      REPLICA_STALE_MS: "3000",
      READY_GRACE_MS: "0",
      // The cross-validated adapted space has its own tests; here it would only add its fit to every build.
      ADAPTED_SPACE: "off",
      ORT_THREADS: "1",
    });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(running.map((r) => r.kill()));
    await sql?.end();
    await relay?.stop();
    await servers?.stop();
  }, 60_000);

  let a: ReplicaProcess;
  let b: ReplicaProcess;
  let firstVersion: string;

  it("a second replica starts from the version the first built, downloading it instead of rebuilding", async () => {
    a = await launch("replica-a", ["--with-sample-gallery"]);
    b = await launch("replica-b");
    const [sa, sb] = [await served(a), await served(b)];
    expect(sa).toMatchObject({ ready: true, count: 210, source: "BUILT" });
    expect(sb).toMatchObject({ ready: true, count: 210, source: "DOWNLOADED", checksum: sa?.checksum });
    expect(sb?.indexVersion).toBe(sa?.indexVersion);
    expect(sb?.activeIndexVersion).toBe(sa?.indexVersion);
    firstVersion = sa?.indexVersion as string;
    // Visible from outside: /readyz and /metrics name the served and the active version.
    const readyz = (await (await fetch(`${b.url}readyz`)).json()) as {
      indexes: { imageType: string; servedIndexVersion: string; activeIndexVersion: string }[];
    };
    expect(readyz.indexes.find((i) => i.imageType === "defect")).toMatchObject({
      servedIndexVersion: firstVersion,
      activeIndexVersion: firstVersion,
    });
    const metrics = await (await fetch(`${b.url}metrics`)).text();
    expect(metrics).toContain('defect_lens_index_version_current{version="v2",image_type="defect"} 1');
    expect(metrics).toContain(
      `defect_lens_index_version_served_info{version="v2",image_type="defect",index_version="${firstVersion.slice(0, 12)}"} 1`,
    );
    expect(await embeddingsComputed(b)).toBe(0);
    const st = await status(b);
    expect(st.replicas.map((r) => r.id).sort()).toEqual(["replica-a", "replica-b"]);
    // One startup rebuild for the deployment, though both replicas started with no index.
    expect(st.rebuildTasks.filter((t) => t.trigger === "STARTUP")).toHaveLength(1);
  }, 300_000);

  it("a flag switch on A is answered by B within seconds, with its reason and credential recorded", async () => {
    const set = await gql(
      a.graphqlUrl,
      SET_FLAG,
      { version: "V1", reason: "incident: V2 ranks oddly" },
      TOKEN,
    );
    expect(set.errors).toBeUndefined();
    const ms = await until("B to answer V1", async () => (await status(b)).activeVersion === "V1", 15_000);
    console.log(`flag propagation A -> B: ${ms} ms`);
    expect((await search(b, null as unknown as string)).data?.searchSimilar.version).toBe("V1");
    const [latest] = (await status(b)).matcherVersionHistory;
    expect(latest).toMatchObject({
      version: "V1",
      reason: "incident: V2 ranks oddly",
      replicaId: "replica-a",
    });
    expect(latest?.setBy).toMatch(/^admin-token:[0-9a-f]{12}$/);
  }, 60_000);

  it("a gallery image added on A is searchable on B within seconds (no rebuild), and its removal on A hides it on B", async () => {
    const held = path.join(SAMPLE_DIR, "held-back", "steel_strip_xsdd", "oxide_scale_of_temperature_system");
    const bytes = await readFile(path.join(held, (await readdir(held))[0] as string));
    const form = new FormData();
    form.append(
      "operations",
      JSON.stringify({
        query: `mutation($images: [GalleryImageInput!]!) { addGalleryImages(images: $images) { added { imageId } refused { code message } } }`,
        variables: {
          images: [
            { file: null, productCode: "steel_strip_xsdd", defectCode: "oxide_scale_of_temperature_system" },
          ],
        },
      }),
    );
    form.append("map", JSON.stringify({ 0: ["variables.images.0.file"] }));
    form.append("0", new Blob([new Uint8Array(bytes)]), "added.jpg");
    const res = await fetch(a.graphqlUrl, {
      method: "POST",
      body: form,
      headers: { "apollo-require-preflight": "true", authorization: `Bearer ${TOKEN}` },
    });
    const added = ((await res.json()) as { data: { addGalleryImages: { added: { imageId: string }[] } } })
      .data.addGalleryImages.added[0]?.imageId;
    expect(added).toMatch(/^\d+$/);
    const topOnB = async () =>
      (
        await gql<{ searchSimilar: { hits: { imageId: string }[] } }>(b.graphqlUrl, SEARCH_IDS, {
          input: { image: { base64: bytes.toString("base64") }, topK: 3, version: "V2" },
        })
      ).data?.searchSimilar.hits[0]?.imageId;
    const addMs = await until(
      "B to serve the image added on A",
      async () => (await topOnB()) === added,
      10_000,
    );
    const removed = await gql(
      a.graphqlUrl,
      `mutation($id: ID!) { removeGalleryImage(imageId: $id) }`,
      { id: added },
      TOKEN,
    );
    expect(removed.errors).toBeUndefined();
    const removeMs = await until("B to stop returning it", async () => (await topOnB()) !== added, 10_000);
    console.log(`gallery change A -> B: add ${addMs} ms, remove ${removeMs} ms`);
  }, 60_000);

  it("a rebuild requested on A is built once for the deployment; B swaps it in with no failed search", async () => {
    // The rebuild must compute some embeddings to count: drop those of 20 gallery images.
    await sql.query(
      "delete from image_embeddings where image_id in (select image_id from images where image_type = 'defect' order by image_id limit 20)",
    );
    const before = (await embeddingsComputed(a)) + (await embeddingsComputed(b));
    const started = await gql<{ rebuildIndex: { id: string } }>(a.graphqlUrl, REBUILD, {}, TOKEN);
    expect(started.errors).toBeUndefined();
    const again = await gql(b.graphqlUrl, REBUILD, {}, TOKEN);
    expect(errorCode(again)).toBe("REBUILD_IN_PROGRESS");
    let failed = 0;
    let ok = 0;
    const t0 = Date.now();
    let swapped = -1;
    while (Date.now() - t0 < 90_000) {
      const answers = await Promise.all([search(a), search(b)]);
      for (const r of answers) r.data?.searchSimilar.hits.length === 3 ? ok++ : failed++;
      const [sa, sb] = [await served(a), await served(b)];
      if (
        sa?.indexVersion !== firstVersion &&
        sb?.indexVersion === sa?.indexVersion &&
        sa?.activeIndexVersion === sa?.indexVersion
      ) {
        swapped = Date.now() - t0;
        break;
      }
    }
    console.log(
      `rebuild on the deployment and swap on both replicas: ${swapped} ms; searches ok ${ok}, failed ${failed}`,
    );
    expect(swapped).toBeGreaterThan(0);
    expect(failed).toBe(0);
    // The task ends just after the activation (retention, its results): wait for it.
    let task: StatusAnswer["status"]["rebuildTasks"][number] | undefined;
    await until("the task to end", async () => {
      task = (await status(a)).rebuildTasks.find((t) => t.id === started.data?.rebuildIndex.id);
      return task?.status === "SUCCEEDED" || task?.status === "FAILED";
    });
    expect(task).toMatchObject({ status: "SUCCEEDED", attempt: 1 });
    // Each search embeds its query image once; the rest is the rebuild's, once for the deployment.
    expect((await embeddingsComputed(a)) + (await embeddingsComputed(b)) - before - (ok + failed)).toBe(20);
  }, 120_000);

  let survivor: ReplicaProcess;
  it("a replica SIGKILLed mid-rebuild leaves a job that the other retries and finishes", async () => {
    await sql.query("delete from image_embeddings");
    const started = await gql<{ rebuildIndex: { id: string } }>(a.graphqlUrl, REBUILD, {}, TOKEN);
    expect(started.errors).toBeUndefined();
    const id = started.data?.rebuildIndex.id as string;
    let runner = "";
    await until("the rebuild to run", async () => {
      const { rows } = await sql.query("select status, replica_id from rebuild_tasks where task_id = $1", [
        id,
      ]);
      runner = rows[0]?.status === "running" ? rows[0].replica_id : "";
      return runner !== "";
    });
    const victim = runner === "replica-a" ? a : b;
    survivor = victim === a ? b : a;
    await victim.kill();
    const t0 = Date.now();
    await until(
      "the retried rebuild to finish",
      async () => {
        const { rows } = await sql.query("select status from rebuild_tasks where task_id = $1", [id]);
        return rows[0]?.status === "succeeded" || rows[0]?.status === "failed";
      },
      120_000,
    );
    const { rows } = await sql.query(
      "select status, attempt, replica_id, error from rebuild_tasks where task_id = $1",
      [id],
    );
    console.log(
      `${victim.name} killed mid-rebuild; retried on ${rows[0].replica_id}, finished ${Date.now() - t0} ms later`,
    );
    expect(rows[0]).toMatchObject({ status: "succeeded", attempt: 2, replica_id: survivor.name });
    expect(rows[0].error).toMatch(/stopped answering mid-rebuild/);
  }, 180_000);

  let c: ReplicaProcess;
  it("a new replica C starts from the active version without building, and keeps the flag", async () => {
    c = await launch("replica-c");
    const sc = await served(c);
    expect(sc).toMatchObject({ ready: true, source: "DOWNLOADED" });
    expect(sc?.indexVersion).toBe((await served(survivor))?.indexVersion);
    expect(await embeddingsComputed(c)).toBe(0);
    expect((await status(c)).activeVersion).toBe("V1");
  }, 200_000);

  it("rollback: activating the first version changes both replicas' answers back", async () => {
    const over = await gql(c.graphqlUrl, SET_FLAG, { version: "V2", reason: "incident over" }, TOKEN);
    expect(over.errors).toBeUndefined();
    expect((await search(c)).data?.searchSimilar.indexSize).toBe(210);
    const res = await gql(c.graphqlUrl, ACTIVATE, { id: firstVersion }, TOKEN);
    expect(res.errors).toBeUndefined();
    const ms = await until("both replicas to serve the first version", async () =>
      (await Promise.all([served(c), served(survivor)])).every((s) => s?.indexVersion === firstVersion),
    );
    console.log(`rollback swap on both replicas: ${ms} ms`);
  }, 60_000);

  it("a corrupt artifact: replicas keep serving what they have, report not ready and why, and recover", async () => {
    const versions = (await status(c)).indexVersions.filter(
      (v) => v.version === "V2" && v.imageType === "DEFECT",
    );
    const newest = versions[0]?.id as string;
    expect(newest).not.toBe(firstVersion);
    const store = createMinioBlobStore({ ...servers.s3, bucket: BUCKET, region: "us-east-1" });
    await store.put(
      `index-artifacts/${newest}/raw/faiss_index.bin.part-00000`,
      Buffer.from("not an index"),
      "application/octet-stream",
    );
    // The replicas' caches hold it already: a fresh replica would download it; drop the cached copies.
    const activate = await gql(c.graphqlUrl, ACTIVATE, { id: newest }, TOKEN);
    expect(activate.errors).toBeUndefined();
    await new Promise((r) => setTimeout(r, 2000));
    const readyz = await fetch(`${c.url}readyz`);
    const body = (await readyz.json()) as { reasons: string[] };
    // C downloaded the first version for the rollback, so the newest is no longer in its cache.
    expect(readyz.status).toBe(503);
    expect(body.reasons.join(" ")).toMatch(/faiss_index\.bin does not match its sha256/);
    expect((await served(c))?.indexVersion).toBe(firstVersion);
    expect((await search(c)).data?.searchSimilar.hits).toHaveLength(3);
    const back = await gql(c.graphqlUrl, ACTIVATE, { id: firstVersion }, TOKEN);
    expect(back.errors).toBeUndefined();
    await c.waitReady(10_000);
  }, 60_000);

  it("PostgreSQL away: replicas keep serving, admin calls get SERVICE_UNAVAILABLE, all resumes when it is back", async () => {
    await relay.stop();
    try {
      expect((await search(c)).data?.searchSimilar.hits).toHaveLength(3);
      expect((await search(survivor)).data?.searchSimilar.hits).toHaveLength(3);
      const refused = await gql(
        c.graphqlUrl,
        SET_FLAG,
        { version: "V1", reason: "during the outage" },
        TOKEN,
      );
      expect(errorCode(refused)).toBe("SERVICE_UNAVAILABLE");
      expect(refused.errors?.[0]?.message).toMatch(/database does not answer/);
    } finally {
      await relay.start();
    }
    await until(
      "the database to answer again",
      async () => {
        const res = await gql(c.graphqlUrl, SET_FLAG, { version: "V1", reason: "back" }, TOKEN);
        return res.errors === undefined;
      },
      30_000,
    );
    await until(
      "the survivor to follow",
      async () => (await status(survivor)).activeVersion === "V1",
      15_000,
    );
    expect((await search(survivor, null as unknown as string)).data?.searchSimilar.version).toBe("V1");
  }, 90_000);
  it("a candidate model's preparation, its replica SIGKILLed halfway, is finished by another that embeds only what is missing", async () => {
    const registered = await gql<{
      registerModel: { model: { modelId: string }; preparation: { id: string } };
    }>(
      c.graphqlUrl,
      /* GraphQL */ `mutation { registerModel(input: { preset: "mobilenetv2-12-int8", resizeMode: "pad" }) {
        model { modelId } preparation { id } } }`,
      {},
      TOKEN,
    );
    expect(registered.errors).toBeUndefined();
    const candidate = registered.data?.registerModel.model.modelId as string;
    const id = registered.data?.registerModel.preparation.id as string;
    const stored = async () =>
      Number(
        (await sql.query("select count(*)::int as n from image_embeddings where model_id = $1", [candidate]))
          .rows[0]?.n,
      );
    const gallery = Number((await sql.query("select count(*)::int as n from images")).rows[0]?.n);
    // Embeddings are stored per step of 64; the kill lands after the first and before the last.
    await until("the first re-embedded step to be stored", async () => (await stored()) > 0);
    const { rows: running } = await sql.query("select replica_id from rebuild_tasks where task_id = $1", [
      id,
    ]);
    const victim = running[0]?.replica_id === c.name ? c : survivor;
    const other = victim === c ? survivor : c;
    await victim.kill();
    const kept = await stored();
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(gallery);
    await until(
      "the retried preparation to finish",
      async () => {
        const { rows } = await sql.query("select status from rebuild_tasks where task_id = $1", [id]);
        return rows[0]?.status === "succeeded" || rows[0]?.status === "failed";
      },
      120_000,
    );
    const { rows } = await sql.query(
      "select status, attempt, replica_id, progress, results from rebuild_tasks where task_id = $1",
      [id],
    );
    expect(rows[0]).toMatchObject({ status: "succeeded", attempt: 2, replica_id: other.name });
    // The retry embedded exactly the gallery images the killed replica had not stored (beside the V1 folder's
    // files, which a V1 build always embeds).
    const v1Files = (rows[0].results as { version: string; count: number }[])
      .filter((r) => r.version === "v1")
      .reduce((n, r) => n + r.count, 0);
    expect(rows[0].progress.newlyEmbedded - v1Files).toBe(gallery - kept);
    expect(await stored()).toBe(gallery);
  }, 180_000);
});
