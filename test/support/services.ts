import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { pino } from "pino";
import type { App } from "../../src/app.js";
import { type AppConfig, loadConfig } from "../../src/config/config.js";
import { startEmbeddedPostgres } from "../../src/db/embedded-postgres.js";
import type { DatasetImage } from "../../src/ingest/dataset.reader.js";
import { startEmbeddedS3 } from "../../src/storage/embedded-s3.js";
import { MODELS_DIR } from "./paths.js";

export {
  DATASETS_DIR,
  MODELS_DIR,
  REPO_ROOT,
  SAMPLE_DIR,
  SHARED_DIR,
  SHARED_PRESENT,
  SHIPPED_MODELS_DIR,
} from "./paths.js";

/** Quiet logs in tests; TEST_LOG_LEVEL=debug to see them. */
export const testLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

/** A scratch folder removed by the returned cleanup. */
export async function scratchDir(
  prefix = "defect-lens-test-",
): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * A fresh, empty database for one test file. On the PostgreSQL server given by TEST_DATABASE_URL (CI:
 * the machine's server at 127.0.0.1:5432), else on an embedded PostgreSQL started for the file.
 */
export async function startTestDatabase(): Promise<{ url: string; stop: () => Promise<void> }> {
  let adminUrl = process.env.TEST_DATABASE_URL;
  let stopServer = async () => {};
  let removeDir = async () => {};
  if (!adminUrl) {
    const scratch = await scratchDir("defect-lens-pg-");
    // mkdtemp makes the folder 0700; PostgreSQL runs as the `postgres` user and must reach its data folder.
    await chmod(scratch.dir, 0o755);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const server = await startEmbeddedPostgres({
      dataDir: path.join(scratch.dir, "pg"),
      port,
      logger: testLogger,
    });
    adminUrl = server.url;
    stopServer = server.stop;
    removeDir = scratch.remove;
  }
  const name = `defect_lens_test_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async stop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
      await stopServer();
      await removeDir();
    },
  };
}

/** A real S3-protocol server (s3rver) on a free port, with its data in a scratch folder. */
export async function startTestS3() {
  const scratch = await scratchDir("defect-lens-s3-");
  const server = await startEmbeddedS3({ dataDir: scratch.dir, port: 0, logger: testLogger });
  return {
    ...server,
    async stop() {
      await server.stop();
      await scratch.remove();
    },
  };
}

/** Environment for the app under test: real servers, the shared model, scratch index folder. */
export function testConfig({
  databaseUrl,
  s3,
  indexDir,
  extra = {},
}: {
  databaseUrl: string;
  s3: { endpoint: string; accessKey: string; secretKey: string };
  indexDir: string;
  extra?: Record<string, string>;
}): AppConfig {
  return loadConfig({
    NODE_ENV: "test",
    DATABASE_URL: databaseUrl,
    S3_ENDPOINT: s3.endpoint,
    S3_ACCESS_KEY: s3.accessKey,
    S3_SECRET_KEY: s3.secretKey,
    S3_BUCKET: `test-${randomBytes(4).toString("hex")}`,
    MODELS_DIR,
    INDEX_CACHE_DIR: indexDir,
    PORT: "0",
    ...extra,
  });
}

/** What {@link testConfig} builds a configuration from. */
export type TestConfigArgs = Parameters<typeof testConfig>[0];

/**
 * A test file's servers: PostgreSQL, an S3 server and a scratch folder, with the app's configuration for them
 * (index cache in `<scratch>/<indexDir>`); `stop` ends them and removes the folder.
 */
export async function startTestServers({
  indexDir = "idx",
  extra = {},
  scratchPrefix,
}: {
  /** Folder of the index cache, inside the scratch folder. */
  indexDir?: string;
  /** More configuration variables (`configure` makes others, e.g. with paths inside the scratch folder). */
  extra?: Record<string, string>;
  /** Start of the scratch folder's name. */
  scratchPrefix?: string;
} = {}) {
  const [db, s3, scratch] = await Promise.all([
    startTestDatabase(),
    startTestS3(),
    scratchDir(scratchPrefix),
  ]);
  const args: TestConfigArgs = {
    databaseUrl: db.url,
    s3,
    indexDir: path.join(scratch.dir, indexDir),
    extra,
  };
  /** Another configuration for these servers, with `over` in place of the arguments it names (a fresh bucket). */
  const configure = (over: Partial<TestConfigArgs> = {}) => testConfig({ ...args, ...over });
  return {
    db,
    s3,
    /** The scratch folder, removed by `stop`. */
    dir: scratch.dir,
    config: configure(),
    configure,
    async stop() {
      await Promise.all([db.stop(), s3.stop()]);
      await scratch.remove();
    },
  };
}

/** Ingests `images` and rebuilds both V2 indexes (defect and normal); throws when the rebuild fails. */
export async function ingestAndIndexV2(app: App, images: readonly DatasetImage[]): Promise<void> {
  await app.ingest.ingest(images);
  const queued = await app.jobs.start({
    targets: [
      { version: "v2", imageType: "defect" },
      { version: "v2", imageType: "normal" },
    ],
    trigger: "admin",
  });
  const task = await app.jobs.untilDone(queued.id);
  if (task.error) throw new Error(`rebuild failed: ${JSON.stringify(task.error)}`);
}
