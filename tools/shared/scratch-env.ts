import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { type Logger, pino } from "pino";
import { type App, createApp } from "../../src/app.js";
import { type AppConfig, loadConfig } from "../../src/config/config.js";
import { type EmbeddedS3Server, startEmbeddedS3 } from "../../src/storage/embedded-s3.js";

/** Where scratch services for evaluation and benchmarks come from. */
export interface ScratchOptions {
  /** PostgreSQL URL of a server where scratch databases may be created and dropped. */
  pgAdminUrl: string;
  /** Use this database as it is (named run) instead of creating a scratch one; it is never dropped. */
  databaseUrl?: string | undefined;
  /** Folder holding `<preset>/model.onnx`. */
  modelsDir: string;
  /** Keep the scratch database, bucket and folders after the run (for inspection). */
  keep?: boolean | undefined;
}

/** One isolated service environment: its own database, bucket and index cache. */
export interface ScratchEnv {
  readonly config: AppConfig;
  /** The raw variables given to `loadConfig`, also usable as a child process environment. */
  readonly env: Record<string, string>;
  /** Temporary folder of this environment (index cache and anything else). */
  readonly dir: string;
  /** Starts the real service object graph on this environment. */
  createApp(options?: { initialiseIndexes?: boolean }): Promise<App>;
  /** Drops the scratch database and deletes the folder (unless kept or named). */
  dispose(): Promise<void>;
}

/** Shared scratch infrastructure: one embedded S3 server for every environment of a run. */
export interface ScratchFactory {
  /**
   * A new environment.
   * @param overrides - extra service variables (MODEL_PRESET, INDEX_FACTORY, MAX_TOP_K, ...).
   */
  create(label: string, overrides?: Record<string, string>): Promise<ScratchEnv>;
  close(): Promise<void>;
}

/** A pino logger writing to stderr, so stdout stays free for the report. */
export function stderrLogger(level: string = "warn"): Logger {
  return pino({ level }, pino.destination(2));
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * Starts the shared scratch infrastructure. Databases are created on `pgAdminUrl`'s server as
 * `defect_lens_<label>_<random>` and dropped by {@link ScratchEnv.dispose}; objects go to an embedded
 * S3 server (the service's own `startEmbeddedS3`) in a temporary folder, one bucket per environment.
 * @throws Error when the PostgreSQL server cannot be reached.
 */
export async function createScratchFactory(
  options: ScratchOptions,
  logger: Logger = stderrLogger(),
): Promise<ScratchFactory> {
  const root = await mkdtemp(path.join(os.tmpdir(), "defect-lens-scratch-"));
  const s3: EmbeddedS3Server = await startEmbeddedS3({ dataDir: path.join(root, "s3"), port: 0, logger });
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: options.pgAdminUrl });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  };
  await admin((c) => c.query("select 1"));
  const envs: ScratchEnv[] = [];

  return {
    async create(label, overrides = {}) {
      const suffix = randomBytes(4).toString("hex");
      const safe = label
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, "_")
        .slice(0, 30);
      const dir = await mkdtemp(path.join(root, `${safe}-`));
      let dbName: string | undefined;
      let databaseUrl = options.databaseUrl;
      if (!databaseUrl) {
        dbName = `defect_lens_${safe}_${suffix}`;
        await admin((c) => c.query(`create database "${dbName}"`));
        databaseUrl = withDatabase(options.pgAdminUrl, dbName);
      }
      const env: Record<string, string> = {
        NODE_ENV: "production",
        LOG_LEVEL: "warn",
        HOST: "127.0.0.1",
        PORT: "0",
        DATABASE_URL: databaseUrl,
        S3_ENDPOINT: s3.endpoint,
        S3_ACCESS_KEY: s3.accessKey,
        S3_SECRET_KEY: s3.secretKey,
        S3_BUCKET: `dl-${safe.replaceAll("_", "-")}-${suffix}`.slice(0, 63),
        MODELS_DIR: path.resolve(options.modelsDir),
        INDEX_CACHE_DIR: path.join(dir, "index-cache"),
        EMBEDDED_DATA_DIR: path.join(dir, "embedded"),
        STARTUP_REBUILD: "never",
        ...overrides,
      };
      const config = loadConfig(env);
      let disposed = false;
      const scratch: ScratchEnv = {
        config,
        env,
        dir,
        createApp: ({ initialiseIndexes = false } = {}) => createApp(config, logger, { initialiseIndexes }),
        async dispose() {
          if (disposed) return;
          disposed = true;
          if (options.keep) {
            logger.warn({ database: databaseUrl, dir }, "scratch environment kept");
            return;
          }
          if (dbName) {
            const name = dbName;
            // Without force first: the app's pool has just closed; force only if a backend lingers.
            await admin((c) => c.query(`drop database if exists "${name}"`)).catch(async () => {
              await new Promise((r) => setTimeout(r, 500));
              await admin((c) => c.query(`drop database if exists "${name}" with (force)`));
            });
          }
          await rm(dir, { recursive: true, force: true });
        },
      };
      envs.push(scratch);
      return scratch;
    },
    async close() {
      for (const e of envs.splice(0))
        await e.dispose().catch((err) => logger.warn({ err }, "dispose failed"));
      await s3.stop();
      if (!options.keep) await rm(root, { recursive: true, force: true });
    },
  };
}
