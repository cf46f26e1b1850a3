import type { App } from "../src/app.js";
import { resolveFactory } from "../src/index/factory.js";
import { createFaissWorkerBackend } from "../src/index/faiss/faiss-worker.backend.js";
import { columnsFromEntries } from "../src/index/gallery-columns.js";
import type { GalleryEntry } from "../src/index/gallery-entry.js";
import { createIndexStore } from "../src/index/index.store.js";
import { since } from "./context.js";
import { type RealEmbeddings, realMixture } from "./real-mixture.js";

const PAGE = 2000;

/** The vectors and rows of a padded defect index, before it is built. */
export interface PaddedVectors {
  size: number;
  /** `size` rows of `dimension` values: the real gallery embeddings first, then real-mixture vectors. */
  vectors: Float32Array;
  entries: GalleryEntry[];
  realCount: number;
}

/**
 * Every real defect gallery embedding of `app` from the database, then real-mixture vectors (entries with
 * product `synthetic`, no object to presign) up to `size`. Synchronous work of about 1 s per 100k vectors:
 * make it before a load that measures the event loop.
 */
export async function paddedVectors(app: App, size: number, real: RealEmbeddings): Promise<PaddedVectors> {
  const dimension = app.embedder.dimension;
  const vectors = new Float32Array(size * dimension);
  const entries: GalleryEntry[] = [];
  for (let after = 0; entries.length < size; ) {
    const page = await app.repository.listGalleryPage({
      imageType: "defect",
      modelId: app.embedder.modelId,
      afterImageId: after,
      limit: PAGE,
    });
    if (page.length === 0) break;
    after = page[page.length - 1]?.imageId ?? after;
    for (const { embedding, ...entry } of page) {
      if (!embedding || entries.length >= size) continue;
      vectors.set(embedding, entries.length * dimension);
      entries.push(entry);
    }
  }
  const realCount = entries.length;
  vectors.set(realMixture(real, size - realCount, size).vectors, realCount * dimension);
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
  return { size, vectors, entries, realCount };
}

/**
 * Replaces the persisted V2 defect index of `app` with one of `size` vectors ({@link paddedVectors}, or
 * `padded` made before). Built by the FAISS worker backend with the factory the service would choose for
 * `size` (INDEX_FACTORY, `auto` resolved), and written with the service's index store under the real
 * index's manifest (model, gallery fingerprint), so the service loads it as its own, then published to the
 * bucket and (by default) activated for the deployment.
 * @returns the build and save times (s), and the factory built.
 * @throws Error when no real index has been built yet.
 */
export async function writePaddedIndex(
  app: App,
  size: number,
  real: RealEmbeddings,
  {
    activate = true,
    padded,
  }: {
    /** Activate it for the deployment (false: publish it to the bucket and record it only). */
    activate?: boolean;
    /** The gallery to index, made before (its size must be `size`). */
    padded?: PaddedVectors;
  } = {},
): Promise<{
  realCount: number;
  factory: string;
  buildSeconds: number;
  saveSeconds: number;
  /** Seconds to upload it to the bucket, record it and (when asked) activate it. */
  publishSeconds: number;
  indexVersionId: string;
}> {
  const store = createIndexStore({ root: app.models.active().cacheDir });
  const current = await store.readManifest("v2", "defect");
  if (!current) throw new Error("build the real index before padding it");
  const { indexSha256: _i, metadataSha256: _m, ...manifest } = current;
  const dimension = app.embedder.dimension;
  const gallery = padded ?? (await paddedVectors(app, size, real));
  if (gallery.size !== size) throw new Error(`padded gallery of ${gallery.size} vectors, not ${size}`);
  const { vectors, entries, realCount } = gallery;
  const { index: cfg } = app.config;
  const factory = resolveFactory(cfg.factory, size, cfg.auto);
  const backend = createFaissWorkerBackend({ threads: { build: cfg.buildThreads, search: cfg.threads } });
  const t0 = performance.now();
  const built = await backend.build({
    dimension,
    factory,
    vectors,
    params: { efConstruction: cfg.efConstruction, efSearch: cfg.efSearch },
    recall: null,
  });
  const buildSeconds = since(t0) / 1000;
  try {
    const t1 = performance.now();
    await store.save({
      index: built.index,
      columns: columnsFromEntries("defect", entries),
      manifest: {
        ...manifest,
        count: size,
        configuredFactory: cfg.factory,
        factory,
        params: built.index.params,
        recall: null,
        buildMs: built.buildMs,
        builtAt: new Date().toISOString(),
        // The padding is not what a projection learned from: serve it in the raw space.
        adaptation: null,
      },
    });
    const saveSeconds = since(t1) / 1000;
    const t2 = performance.now();
    // Published like a rebuild's index, so every replica (and the next start) serves it.
    const indexVersionId = await app.replica.publishLocal(
      { version: "v2", imageType: "defect" },
      { onlyIfNone: !activate, reason: `bench: ${size} vectors` },
    );
    if (!indexVersionId) throw new Error("the padded index was not in the cache after its save");
    return {
      realCount,
      factory,
      buildSeconds,
      saveSeconds,
      publishSeconds: since(t2) / 1000,
      indexVersionId,
    };
  } finally {
    await built.index.close();
  }
}
