import path from "node:path";
import { expect } from "vitest";
import { type App, createApp } from "../../src/app.js";
import type { HttpServer } from "../../src/http/http.server.js";
import { type DatasetImage, listDatasetImages } from "../../src/ingest/dataset.reader.js";
import { exportV1Gallery } from "../../src/ingest/v1-gallery.export.js";
import { rebuildAndWait } from "./graphql-client.js";
import { firstPerClass } from "./images.js";
import { SAMPLE_DIR, startTestServers, testLogger } from "./services.js";

/** The admin token of {@link startWebGallery}'s service. */
export const WEB_ADMIN_TOKEN = "web-admin-token-0123456789";

/** A running service over real X-SDD images (the shipped sample), V1 and V2 indexes built, on real servers. */
export interface WebGallery {
  app: App;
  server: HttpServer;
  /** e.g. `http://127.0.0.1:1234/` */
  url: string;
  /** `url` + `graphql` */
  graphqlUrl: string;
  gallery: DatasetImage[];
  /** Held-back query images of the same classes (never ingested), two per class. */
  queries: DatasetImage[];
  /** The S3 server's origin (presigned URLs point there). */
  s3Origin: string;
  stop(): Promise<void>;
}

/**
 * Starts PostgreSQL, an S3 server and the service (ADMIN_TOKEN {@link WEB_ADMIN_TOKEN}, V1 gallery
 * exported from the same images), ingests `perClass` gallery images per defect type of the shipped X-SDD
 * sample (samples/xsdd) and builds every index. Its held-back images are the queries.
 * @param extra - more settings for the service.
 */
export async function startWebGallery(
  perClass = 20,
  extra: Record<string, string> = {},
): Promise<WebGallery> {
  const servers = await startTestServers({ indexDir: "index-cache" });
  // The sample that ships with the service: these tests run the same with or without ../shared.
  const gallery = firstPerClass(
    await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") }),
    perClass,
  );
  const queries = firstPerClass(await listDatasetImages({ root: path.join(SAMPLE_DIR, "held-back") }), 2);
  const v1Dir = path.join(servers.dir, "v1-gallery");
  await exportV1Gallery({ images: gallery, outDir: v1Dir });
  const config = servers.configure({
    extra: { ADMIN_TOKEN: WEB_ADMIN_TOKEN, V1_GALLERY_DIR: v1Dir, STARTUP_REBUILD: "never", ...extra },
  });
  const app: App = await createApp(config, testLogger);
  const server = await app.listen();
  const summary = await app.ingest.ingest(gallery);
  expect(summary.failed).toBe(0);
  for (const version of ["V2", "V1"]) {
    const task = await rebuildAndWait(server.url, WEB_ADMIN_TOKEN, "ALL", version);
    expect(task.status, JSON.stringify(task.error)).toBe("SUCCEEDED");
  }
  return {
    app,
    server,
    url: server.url,
    graphqlUrl: server.graphqlUrl,
    gallery,
    queries,
    s3Origin: new URL(servers.s3.endpoint).origin,
    async stop() {
      await app.close();
      await servers.stop();
    },
  };
}
