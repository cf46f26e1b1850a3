import type { App } from "../src/app.js";
import type { GalleryEntry } from "../src/index/gallery-entry.js";
import { createIndexStore } from "../src/index/index.store.js";
import { buildVectorIndex } from "../src/index/vector-index.js";
import { packVectors } from "../src/matchers/gallery-source.js";
import { since } from "./context.js";
import { clusterSpace } from "./synthetic.js";

const PAGE = 2000;

/**
 * Replaces the persisted V2 defect index of `app` with one of `size` vectors: every real gallery
 * embedding from the database first, then synthetic clustered vectors (entries with product
 * `synthetic`, no object to presign). Written with the service's index store under the real index's
 * manifest (model, factory, gallery fingerprint), so the service loads it as its own.
 * @returns the build and save times (s).
 * @throws Error when no real index has been built yet.
 */
export async function writePaddedIndex(
  app: App,
  size: number,
): Promise<{ realCount: number; buildSeconds: number; saveSeconds: number }> {
  const store = createIndexStore({ root: app.config.index.cacheDir });
  const current = await store.readManifest("v2", "defect");
  if (!current) throw new Error("build the real index before padding it");
  const { indexSha256: _i, metadataSha256: _m, ...manifest } = current;
  const vectors: Float32Array[] = [];
  const entries: GalleryEntry[] = [];
  for (let after = 0; ; ) {
    const page = await app.repository.listGalleryPage({
      imageType: "defect",
      modelId: app.embedder.modelId,
      afterImageId: after,
      limit: PAGE,
    });
    if (page.length === 0) break;
    after = page[page.length - 1]?.imageId ?? after;
    for (const { embedding, ...entry } of page) {
      if (!embedding || vectors.length >= size) continue;
      vectors.push(embedding);
      entries.push(entry);
    }
  }
  const realCount = vectors.length;
  const dimension = app.embedder.dimension;
  const synthetic = clusterSpace({ dimension, clusters: 1000 }).sample(size - realCount, size);
  const all = new Float32Array(size * dimension);
  all.set(packVectors(vectors, dimension));
  all.set(synthetic, realCount * dimension);
  for (let i = realCount; i < size; i++) {
    entries.push({
      imageId: null,
      imageType: "defect",
      productCode: "synthetic",
      productName: null,
      defectCode: "synthetic",
      defectName: null,
      filePath: null,
      storageUrl: null,
      contentSha256: null,
    });
  }
  const t0 = performance.now();
  const index = buildVectorIndex({ dimension, factory: app.config.index.factory, vectors: all });
  const buildSeconds = since(t0) / 1000;
  const t1 = performance.now();
  await store.save({
    index,
    entries,
    manifest: { ...manifest, count: size, builtAt: new Date().toISOString() },
  });
  return { realCount, buildSeconds, saveSeconds: since(t1) / 1000 };
}
