import type { Logger } from "pino";
import type { AppConfig } from "../config/config.js";
import { startEmbeddedPostgres } from "../db/embedded-postgres.js";
import { startEmbeddedS3 } from "../storage/embedded-s3.js";
import { assertEmbeddedPostgresRunnable, embeddedPostgresBinDir } from "./embedded-postgres-binaries.js";

/** Where the servers the service talks to are, whether it started them or they were configured. */
export interface Infrastructure {
  databaseUrl: string;
  s3: { endpoint: string; accessKey: string; secretKey: string };
  /** Stops what this process started (embedded servers); configured servers are left alone. */
  stop(): Promise<void>;
}

/**
 * Starts the embedded PostgreSQL and S3-protocol servers where the configuration names none.
 * @throws Error when an embedded server cannot start (port taken, data folder unusable, PostgreSQL's programs
 *   out of the reach of the user it runs them as).
 */
export async function startInfrastructure(config: AppConfig, logger: Logger): Promise<Infrastructure> {
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse())
      await s().catch((err) => logger.warn({ err }, "stopping a server failed"));
  };
  try {
    // Both at once: on a first start initdb takes about 2 s, and the S3 server's start about 0.2 s.
    const database = async (): Promise<string> => {
      if (config.database.kind === "external") return config.database.url;
      await assertEmbeddedPostgresRunnable(await embeddedPostgresBinDir(), process.getuid?.());
      const pg = await startEmbeddedPostgres({ ...config.database, logger });
      stops.push(pg.stop);
      return pg.url;
    };
    const storage = async (): Promise<Infrastructure["s3"]> => {
      const server = config.storage.server;
      if (server.kind !== "embedded")
        return { endpoint: server.endpoint, accessKey: server.accessKey, secretKey: server.secretKey };
      const embedded = await startEmbeddedS3({ ...server, logger });
      stops.push(embedded.stop);
      return { endpoint: embedded.endpoint, accessKey: embedded.accessKey, secretKey: embedded.secretKey };
    };
    // allSettled: when one fails, the other has finished starting (and is in `stops`) before the catch
    // below stops it.
    const [db, objects] = await Promise.allSettled([database(), storage()]);
    if (db.status === "rejected") throw db.reason;
    if (objects.status === "rejected") throw objects.reason;
    const databaseUrl = db.value;
    const s3 = objects.value;
    return { databaseUrl, s3, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
