import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import type { Logger } from "pino";
import { defectTypes } from "./defect-types.table.js";
import { activeModelChanges, embeddingModels, shadowComparisons } from "./embedding-models.table.js";
import { galleryChanges, nearDuplicates } from "./gallery-changes.table.js";
import { imageEmbeddings } from "./image-embeddings.table.js";
import { images } from "./images.table.js";
import { products } from "./products.table.js";
import {
  activeIndexes,
  indexVersions,
  matcherVersionChanges,
  rebuildTasks,
  replicas,
} from "./serving-state.table.js";

/** Every table, for drizzle's relational typing. */
export const schema = {
  products,
  defectTypes,
  images,
  imageEmbeddings,
  matcherVersionChanges,
  indexVersions,
  activeIndexes,
  replicas,
  rebuildTasks,
  galleryChanges,
  nearDuplicates,
  embeddingModels,
  activeModelChanges,
  shadowComparisons,
};

/**
 * The NOTIFY channel replicas listen on; payloads are hints (`flag`, `index`, `task`, `gallery`), the
 * tables the truth.
 */
export const STATE_CHANNEL = "defect_lens_state";
/** The typed drizzle handle used by repositories. */
export type Database = NodePgDatabase<typeof schema>;

/** Generated SQL migrations shipped with the service (drizzle-kit output). */
export const MIGRATIONS_DIR = fileURLToPath(new URL("../../drizzle", import.meta.url));

/** Advisory lock key held while migrations run (any 64-bit number unique to this service). */
const MIGRATION_LOCK = 0x64656c656e73; // "delens"

/** Longest close() waits for the pool's connections to end once asked (ms); a server gone silent must not hold up a shutdown. */
const CLOSE_WAIT_MS = 2000;

/** A connection pool plus its drizzle handle. */
export interface DbClient {
  readonly db: Database;
  readonly pool: pg.Pool;
  /** Applies pending migrations from {@link MIGRATIONS_DIR}; idempotent. */
  migrate(): Promise<void>;
  /**
   * Why the database does not answer `select 1` within `timeoutMs` (ms), or null when it does.
   */
  unreachableReason(timeoutMs: number): Promise<string | null>;
  /** Ends the pool and waits (up to 2 s) until its connections have ended. */
  close(): Promise<void>;
}

/**
 * Creates a pool for `url` (no connection is made until first use).
 * @param connectTimeoutMs - how long a connection attempt may take before failing (ms).
 * @param queryTimeoutMs - how long one statement may run (ms).
 */
export function createDbClient({
  url,
  logger,
  connectTimeoutMs = 5000,
  queryTimeoutMs = 15_000,
}: {
  url: string;
  logger: Logger;
  connectTimeoutMs?: number;
  /** Longest a statement may run: the server cancels it (statement_timeout), the client gives up a second later (query_timeout). */
  queryTimeoutMs?: number;
}): DbClient {
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    connectionTimeoutMillis: Math.min(connectTimeoutMs, queryTimeoutMs),
    statement_timeout: queryTimeoutMs,
    query_timeout: queryTimeoutMs + 1000,
  });
  // A client losing its server must not crash the process; the next query reports it. Each client gets
  // its own handler, which logs: the pool's 'error' event covers idle clients only, and a checked-out one (a
  // transaction, the migration lock) emits on itself, e.g. when a Ctrl-C reaches the embedded PostgreSQL
  // (same process group) before the service closes. The pool re-emits an idle client's error, which then
  // needs a listener (pg-pool throws without one) but has already been logged by the client's.
  // Connections not yet ended: pool.end() resolves once it has asked its clients to end, not once they
  // have, so close() waits for them; otherwise a database stopped right after (the embedded PostgreSQL)
  // can still terminate a connection whose goodbye is in flight (57P01, logged as a client error).
  const open = new Set<pg.Client>();
  pool.on("connect", (client) => {
    open.add(client);
    client.once("end", () => open.delete(client));
    client.on("error", (err) => logger.warn({ err }, "PostgreSQL client error"));
  });
  pool.on("error", () => {});
  const db = drizzle(pool, { schema });
  return {
    db,
    pool,
    async migrate() {
      if (!existsSync(MIGRATIONS_DIR)) throw new Error(`migrations folder missing: ${MIGRATIONS_DIR}`);
      // Replicas starting together on an empty database: one migrates, the others wait for it.
      const lock = await pool.connect();
      try {
        await lock.query("select pg_advisory_lock($1)", [MIGRATION_LOCK]);
        await migrate(db, { migrationsFolder: MIGRATIONS_DIR });
      } finally {
        await lock.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => undefined);
        lock.release();
      }
    },
    async unreachableReason(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          pool.query("select 1"),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        return null;
      } catch (e) {
        return (e as Error).message || String(e);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      const ending = [...open].map((c) => new Promise<void>((resolve) => c.once("end", () => resolve())));
      await pool.end();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(ending),
        new Promise((resolve) => {
          timer = setTimeout(resolve, CLOSE_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
    },
  };
}
