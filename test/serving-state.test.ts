import { cp, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDbClient, type DbClient, MIGRATIONS_DIR } from "../src/db/db.client.js";
import {
  createServingStateRepository,
  type ServingStateRepository,
  STATE_CHANNEL,
} from "../src/deployment/serving-state.repository.js";
import { scratchDir, startTestDatabase, testLogger } from "./support/services.js";

const version = (id: string, over: Record<string, unknown> = {}) => ({
  indexVersionId: id,
  matcherVersion: "v2" as const,
  imageType: "defect" as const,
  modelId: "m@1",
  factory: "Flat",
  count: 3,
  recallAt10: null,
  galleryFingerprint: "fp",
  indexSha256: "a".repeat(64),
  artifactKey: `index-artifacts/${id}/`,
  artifactSha256: "b".repeat(64),
  artifactBytes: 100,
  builtAt: new Date().toISOString(),
  builtBy: "replica-x",
  ...over,
});

describe("serving state in PostgreSQL", () => {
  let database: Awaited<ReturnType<typeof startTestDatabase>>;
  let client: DbClient;
  let repo: ServingStateRepository;
  beforeAll(async () => {
    database = await startTestDatabase();
    client = createDbClient({ url: database.url, logger: testLogger });
    await client.migrate();
    repo = createServingStateRepository(client.pool);
  });
  afterAll(async () => {
    await client?.close();
    await database?.stop();
  });

  it("migrates forward from the previous schema, keeping its rows", async () => {
    const other = await startTestDatabase();
    const scratch = await scratchDir();
    const pool = new pg.Pool({ connectionString: other.url });
    try {
      // The migrations as they were before the serving-state tables: the first two journal entries.
      const previous = path.join(scratch.dir, "drizzle");
      await cp(MIGRATIONS_DIR, previous, { recursive: true });
      const journal = JSON.parse(await readFile(path.join(previous, "meta", "_journal.json"), "utf8"));
      journal.entries = journal.entries.filter((e: { tag: string }) => e.tag < "0002");
      await writeFile(path.join(previous, "meta", "_journal.json"), JSON.stringify(journal));
      await migrate(drizzle(pool), { migrationsFolder: previous });
      await pool.query("insert into products (product_code, product_name) values ('P1', 'Plate')");
      const before = await pool.query(
        "select table_name from information_schema.tables where table_schema = 'public'",
      );
      expect(before.rows.map((r) => r.table_name)).not.toContain("matcher_version_changes");
      const upgraded = createDbClient({ url: other.url, logger: testLogger });
      await upgraded.migrate();
      await upgraded.migrate();
      await upgraded.close();
      expect((await pool.query("select product_name as name from products")).rows).toEqual([
        { name: "Plate" },
      ]);
      const after = await pool.query("select count(*)::int as n from matcher_version_changes");
      expect(after.rows[0].n).toBe(0);
    } finally {
      await pool.end();
      await other.stop();
      await scratch.remove();
    }
  });

  it("seeds the matcher flag only on an empty table, and keeps its history newest first", async () => {
    await repo.seedMatcherVersion("v2", "r1");
    await repo.seedMatcherVersion("v1", "r2");
    expect((await repo.activeMatcherVersion())?.version).toBe("v2");
    await repo.setMatcherVersion({
      version: "v1",
      reason: "incident",
      setBy: "admin-token:abc",
      replicaId: "r1",
    });
    const history = await repo.matcherVersionHistory();
    expect(history.map((h) => [h.version, h.setBy])).toEqual([
      ["v1", "admin-token:abc"],
      ["v2", "config"],
    ]);
  });

  it("announces a flag switch with NOTIFY only once committed", async () => {
    const listener = new pg.Client({ connectionString: database.url });
    await listener.connect();
    const heard: string[] = [];
    listener.on("notification", (n) => heard.push(n.payload ?? ""));
    await listener.query(`listen ${STATE_CHANNEL}`);
    await repo.setMatcherVersion({
      version: "v2",
      reason: "back",
      setBy: "admin-token:abc",
      replicaId: "r1",
    });
    const t0 = Date.now();
    while (heard.length === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    await listener.end();
    expect(heard).toEqual(["flag"]);
  });

  it("flips the active pointer in one transaction, remembers the previous version, and refuses unknown ones", async () => {
    await repo.recordIndexVersion(version("v-one"));
    await repo.recordIndexVersion(version("v-one")); // idempotent
    expect(await repo.activate({ indexVersionId: "v-one", activatedBy: "r1", reason: "built" })).toBe(true);
    await repo.recordIndexVersion(version("v-two"));
    // A replica publishing its local cache never replaces an existing pointer.
    expect(
      await repo.activate({ indexVersionId: "v-two", activatedBy: "r2", reason: "x" }, { onlyIfNone: true }),
    ).toBe(false);
    expect(await repo.activate({ indexVersionId: "v-two", activatedBy: "r2", reason: "rebuilt" })).toBe(true);
    const [active] = await repo.activeIndexes();
    expect(active).toMatchObject({
      indexVersionId: "v-two",
      previousIndexVersionId: "v-one",
      activatedBy: "r2",
    });
    await expect(repo.activate({ indexVersionId: "nope", activatedBy: "r1", reason: "x" })).rejects.toThrow(
      /does not exist/,
    );
    // A guard that throws leaves the pointer as it was.
    await expect(
      repo.activate(
        { indexVersionId: "v-one", activatedBy: "r1", reason: "x" },
        {
          guard: async () => {
            throw new Error("not the owner");
          },
        },
      ),
    ).rejects.toThrow(/not the owner/);
    expect((await repo.activeIndexes())[0]?.indexVersionId).toBe("v-two");
  });

  it("expires versions beyond the kept ones, never the active or the previous one", async () => {
    for (const id of ["v-3", "v-4", "v-5"]) {
      await repo.recordIndexVersion(version(id));
      await new Promise((r) => setTimeout(r, 5));
    }
    // Newest first: v-5, v-4, v-3, v-two (active), v-one (previous).
    const expired = await repo.expiredVersions({ modelId: "m@1", version: "v2", imageType: "defect" }, 1);
    expect(expired.map((v) => v.indexVersionId)).toEqual(["v-4", "v-3"]);
  });

  it("tells live replicas from stale ones by their heartbeat", async () => {
    await repo.heartbeat({
      replicaId: "live",
      host: "h",
      pid: 1,
      startedAt: new Date().toISOString(),
      ready: true,
      served: [],
    });
    expect(await repo.isStale("live", 5000)).toBe(false);
    expect(await repo.isStale("never-seen", 5000)).toBe(true);
    await client.pool.query(
      "update replicas set last_seen_at = now() - interval '10 seconds' where replica_id = 'live'",
    );
    expect(await repo.isStale("live", 5000)).toBe(true);
    expect((await repo.liveReplicas(5000)).map((r) => r.replicaId)).toEqual([]);
  });
});
