import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { Embedder } from "../embedding/embedder.service.js";
import type { GalleryEntry } from "../index/gallery-entry.js";
import type { ImageType } from "../shared/types.js";
import { parseV1FileName, V1_IMAGE_EXTENSIONS } from "./file-name.convention.js";
import { type CollectedGallery, type GallerySource, packVectorsYielding } from "./gallery-source.js";

/** Files read and embedded per step; bounds memory on big folders. */
const STEP = 64;

/**
 * V1 gallery: the old system's flat folder of `{product}_{defect}_*.{ext}` files, labels parsed from
 * the names. Every build embeds every file, as the old system did.
 */
export function createV1GallerySource({
  dir,
  embedder,
  logger,
}: {
  dir: string;
  embedder: Embedder;
  logger: Logger;
}): GallerySource {
  const listImages = async () =>
    (await readdir(dir)).filter((n) => V1_IMAGE_EXTENSIONS.has(path.extname(n).toLowerCase())).sort();
  return {
    version: "v1",
    description: `folder ${dir}`,
    async fingerprint(imageType) {
      const names = (await listImages()).filter((n) => {
        const parsed = parseV1FileName(n);
        return parsed && (parsed.defectCode === null ? "normal" : "defect") === imageType;
      });
      return `count=${names.length};names=${createHash("sha256").update(names.join("\n")).digest("hex").slice(0, 16)}`;
    },
    async collect(imageType: ImageType, onProgress) {
      const names = await listImages();
      const failures: CollectedGallery["failures"] = [];
      const wanted = names.flatMap((name) => {
        const parsed = parseV1FileName(name);
        if (!parsed) {
          failures.push({ item: name, reason: "name does not follow {product}_{defect}_{anything}.{ext}" });
          return [];
        }
        const type: ImageType = parsed.defectCode === null ? "normal" : "defect";
        return type === imageType ? [{ name, ...parsed }] : [];
      });
      const entries: GalleryEntry[] = [];
      const vectors: Float32Array[] = [];
      const progress = { total: wanted.length, processed: 0, newlyEmbedded: 0, failed: 0 };
      onProgress({ ...progress });
      for (let i = 0; i < wanted.length; i += STEP) {
        const step = wanted.slice(i, i + STEP);
        const bytes = await Promise.all(step.map((w) => readFile(path.join(dir, w.name))));
        const outcomes = await embedder.embedMany(bytes);
        outcomes.forEach((o, k) => {
          const w = step[k];
          const b = bytes[k];
          if (!w || !b) return;
          if (!o.ok) {
            failures.push({ item: w.name, reason: o.error.message });
            progress.failed++;
            return;
          }
          vectors.push(o.embedding);
          entries.push({
            imageId: null,
            imageType,
            productCode: w.productCode,
            productName: null,
            defectCode: w.defectCode,
            defectName: null,
            filePath: path.join(dir, w.name),
            storageUrl: null,
            contentSha256: createHash("sha256").update(b).digest("hex"),
          });
          progress.newlyEmbedded++;
        });
        progress.processed += step.length;
        onProgress({ ...progress });
      }
      if (failures.length > 0)
        logger.warn({ failures: failures.slice(0, 20), count: failures.length }, "V1 gallery files skipped");
      return { entries, vectors: await packVectorsYielding(vectors, embedder.dimension), failures };
    },
  };
}
