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
    let databaseUrl: string;
    if (config.database.kind === "external") {
      databaseUrl = config.database.url;
    } else {
      await assertEmbeddedPostgresRunnable(await embeddedPostgresBinDir(), process.getuid?.());
      const pg = await startEmbeddedPostgres({ ...config.database, logger });
      stops.push(pg.stop);
      databaseUrl = pg.url;
    }
    const server = config.storage.server;
    let s3: Infrastructure["s3"];
    if (server.kind === "embedded") {
      const embedded = await startEmbeddedS3({ ...server, logger });
      stops.push(embedded.stop);
      s3 = { endpoint: embedded.endpoint, accessKey: embedded.accessKey, secretKey: embedded.secretKey };
    } else {
      s3 = { endpoint: server.endpoint, accessKey: server.accessKey, secretKey: server.secretKey };
    }
    return { databaseUrl, s3, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
