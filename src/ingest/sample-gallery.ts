import { existsSync } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import { listDatasetImages } from "./dataset.reader.js";
import type { IngestService, IngestSummary } from "./ingest.service.js";

/** What importing the shipped sample gallery did, and a held-back image to try a search with. */
export interface SampleGalleryResult {
  /** Images in the sample gallery folder. */
  readonly images: number;
  readonly summary: IngestSummary;
  /** Path of one held-back sample image (not in the gallery), relative to the working directory when inside it; undefined if there is none. */
  readonly exampleQueryImage: string | undefined;
}

/**
 * Imports the shipped sample gallery (`<galleryDir>/<product>/<defect>/<files>`, see samples/xsdd/README.md)
 * into PostgreSQL, object storage and embeddings. Idempotent by content hash, like every ingestion: a second
 * run imports nothing twice. The caller builds the index afterwards (the startup's if-needed rebuild), and
 * makes the thumbnails (the background backfill).
 * @throws Error naming SAMPLE_DIR when the folder is missing, or when an image of it cannot be imported.
 */
export async function loadSampleGallery({
  galleryDir,
  heldBackDir,
  ingest,
  logger,
}: {
  galleryDir: string;
  heldBackDir: string;
  ingest: IngestService;
  logger: Logger;
}): Promise<SampleGalleryResult> {
  if (!existsSync(galleryDir)) {
    throw new Error(
      `Sample gallery not found at ${galleryDir}. It ships in the repository as samples/xsdd/gallery: ` +
        "start from the repository folder, or set SAMPLE_DIR to the folder holding gallery/ and held-back/.",
    );
  }
  const images = await listDatasetImages({ root: galleryDir });
  // Thumbnails only serve the web app's grid: the server's background backfill makes them once it serves,
  // so the first start does not wait for them (about 1.5 s for the sample's 210 images).
  const summary = await ingest.ingest(images, undefined, undefined, { thumbnails: false });
  if (summary.failed > 0) {
    // A shipped image that cannot be imported means a damaged checkout or an unreachable server.
    const first = summary.failures[0];
    throw new Error(
      `Sample gallery: ${summary.failed} of ${images.length} images failed to import (first: ${first?.file}: ${first?.reason}).`,
    );
  }
  logger.info(
    { imported: summary.imported, skipped: summary.skipped, images: images.length, galleryDir },
    "sample gallery loaded",
  );
  const heldBack = existsSync(heldBackDir) ? await listDatasetImages({ root: heldBackDir }) : [];
  const example = heldBack[0]?.path;
  const relative = example && path.relative(process.cwd(), example);
  return {
    images: images.length,
    summary,
    exampleQueryImage: relative && !relative.startsWith("..") ? relative : example,
  };
}
