import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";

/** An S3-protocol server run in-process, for zero-configuration runs and tests. */
export interface EmbeddedS3Server {
  /** e.g. `http://127.0.0.1:9010` */
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  stop(): Promise<void>;
}

/**
 * Starts `s3rver` (a file-backed S3 implementation) storing objects under `dataDir`.
 * s3rver accepts only its fixed credentials `S3RVER`/`S3RVER` (see its README).
 * @param port - 0 picks a free port.
 */
export async function startEmbeddedS3({
  dataDir,
  port,
  logger,
}: {
  dataDir: string;
  port: number;
  logger: Logger;
}): Promise<EmbeddedS3Server> {
  if (port !== 0) {
    const existing = `http://127.0.0.1:${port}`;
    // Another process of this service may already run it (the server while the CLI ingests): share it.
    const running = await fetch(existing, { signal: AbortSignal.timeout(1000) })
      .then(() => true)
      .catch(() => false);
    if (running) {
      logger.info({ endpoint: existing }, "using the embedded S3 server already running");
      return { endpoint: existing, accessKey: "S3RVER", secretKey: "S3RVER", stop: async () => {} };
    }
  }
  await mkdir(dataDir, { recursive: true });
  // Loaded only when the embedded server runs: it is a development default, and its import takes about
  // 0.3 s of a start.
  const { default: S3rver } = await import("s3rver");
  const server = new S3rver({ port, address: "127.0.0.1", directory: dataDir, silent: true });
  const address = (await server.run()) as AddressInfo;
  const endpoint = `http://127.0.0.1:${address.port}`;
  logger.info({ endpoint, dataDir }, "embedded S3 server ready");
  return { endpoint, accessKey: "S3RVER", secretKey: "S3RVER", stop: () => server.close() };
}
