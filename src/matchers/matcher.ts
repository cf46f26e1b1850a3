import type { Logger } from "pino";
import type { GalleryEntry } from "../index/gallery-entry.js";
import type { HnswParams } from "../index/hnsw.params.js";
import type { IndexManifest, IndexStore, LoadedIndex } from "../index/index.store.js";
import { buildVectorIndex } from "../index/vector-index.js";
import { errors } from "../shared/errors.js";
import type { ImageType, MatcherVersion } from "../shared/types.js";
import type { GalleryProgress, GallerySource } from "./gallery-source.js";

/** How the index being served came to be. */
export type IndexSource = "built" | "loaded" | "fallback";

/** What an operator sees of one index. */
export interface IndexState {
  version: MatcherVersion;
  imageType: ImageType;
  ready: boolean;
  count: number;
  dimension: number;
  modelId: string | null;
  factory: string | null;
  /** HNSW efSearch applied to the index being served; null for other index types. */
  efSearch: number | null;
  builtAt: string | null;
  source: IndexSource | null;
  /** When this process started serving it (ISO 8601). */
  servingSince: string | null;
  indexSha256: string | null;
  gallery: string;
}

/** Search options after validation. */
export interface MatchOptions {
  /** Number of hits wanted, >= 1. */
  topK: number;
  /** Drop hits whose cosine similarity is below this. */
  minScore?: number | undefined;
  /** Keep only these product codes (any, when empty or undefined). */
  productCodes?: readonly string[] | undefined;
  /** Keep only these defect codes (`normal` matches normal images). */
  defectCodes?: readonly string[] | undefined;
  /** Content hash of a gallery image to leave out ("find similar" must not answer with the query itself). */
  excludeContentSha256?: string | undefined;
}

/** One ranked match. */
export interface Match {
  entry: GalleryEntry;
  /** Cosine similarity in [-1, 1]. */
  score: number;
}

/** Summary of a finished rebuild of one index. */
export interface RebuildOutcome {
  manifest: IndexManifest;
  failures: { item: string; reason: string }[];
  /** Time from the end of the build to the new index being served (ms). */
  swapMs: number;
}

/**
 * A matcher serves one FAISS index per image type over one gallery source. V1 and V2 are both this
 * interface; they differ in their {@link GallerySource}. An index is swapped in as one assignment, so a
 * search runs against either the old or the new index, never a mix.
 */
export interface Matcher {
  readonly version: MatcherVersion;
  state(imageType: ImageType): IndexState;
  /**
   * Top matches for an L2-normalised query embedding.
   * @throws DomainError INDEX_NOT_READY when no index is being served for `imageType`.
   */
  search(
    imageType: ImageType,
    query: Float32Array,
    options: MatchOptions,
  ): { matches: Match[]; indexSize: number };
  /**
   * Loads the persisted index if its manifest matches the configured model and index type and, with
   * `checkGallery`, the gallery's current fingerprint.
   * @returns whether an index was loaded.
   */
  loadPersisted(imageType: ImageType, source: "loaded" | "fallback", checkGallery: boolean): Promise<boolean>;
  /** Rebuilds from the gallery source, persists it and swaps it in; the old index is kept on failure. */
  rebuild(imageType: ImageType, onProgress: (p: GalleryProgress) => void): Promise<RebuildOutcome>;
}

interface Serving {
  loaded: LoadedIndex;
  source: IndexSource;
  servingSince: string;
}

const NORMAL_CODE = "normal";

/** The error for a search against an index that is not being served. */
export function indexNotReadyError(version: MatcherVersion, imageType: ImageType) {
  return errors.indexNotReady(
    `The ${version} index for ${imageType} images is not ready yet: it is being built or has never been built. Check the status query, or run rebuildIndex.`,
    { version, imageType },
  );
}

function keep(entry: GalleryEntry, options: MatchOptions): boolean {
  if (options.excludeContentSha256 !== undefined && entry.contentSha256 === options.excludeContentSha256)
    return false;
  if (options.productCodes?.length && !options.productCodes.includes(entry.productCode)) return false;
  if (options.defectCodes?.length && !options.defectCodes.includes(entry.defectCode ?? NORMAL_CODE))
    return false;
  return true;
}

/** Creates a matcher of `version` over `source`, persisting into `store`. */
export function createMatcher({
  version,
  source,
  store,
  modelId,
  dimension,
  factory,
  hnsw,
  logger,
}: {
  version: MatcherVersion;
  source: GallerySource;
  store: IndexStore;
  modelId: string;
  dimension: number;
  factory: string;
  /** HNSW parameters, used when `factory` builds an HNSW index. */
  hnsw: HnswParams;
  logger: Logger;
}): Matcher {
  const serving = new Map<ImageType, Serving>();
  const log = logger.child({ matcher: version });

  return {
    version,

    state(imageType) {
      const s = serving.get(imageType);
      const m = s?.loaded.manifest;
      return {
        version,
        imageType,
        ready: s !== undefined,
        count: m?.count ?? 0,
        dimension: m?.dimension ?? dimension,
        modelId: m?.modelId ?? null,
        factory: m?.factory ?? null,
        efSearch: m?.factory.startsWith("HNSW") && hnsw.efSearch !== undefined ? hnsw.efSearch : null,
        builtAt: m?.builtAt ?? null,
        source: s?.source ?? null,
        servingSince: s?.servingSince ?? null,
        indexSha256: m?.indexSha256 ?? null,
        gallery: source.description,
      };
    },

    search(imageType, query, options) {
      const s = serving.get(imageType);
      if (!s) throw indexNotReadyError(version, imageType);
      const { index, entries } = s.loaded;
      if (query.length !== index.dimension) {
        throw errors.indexNotReady(
          `The ${version} ${imageType} index holds ${index.dimension}-d vectors but the model gives ${query.length}-d; rebuild the index.`,
        );
      }
      const filtered =
        options.excludeContentSha256 !== undefined ||
        !!options.productCodes?.length ||
        !!options.defectCodes?.length;
      // Filters are applied after the search, so ask for more until topK survive or the index is exhausted.
      let k = filtered ? Math.max(options.topK * 4, 32) : options.topK;
      for (;;) {
        k = Math.min(k, index.count);
        const { labels, scores } = index.search(query, k);
        const matches: Match[] = [];
        let belowMin = false;
        for (let i = 0; i < labels.length && matches.length < options.topK; i++) {
          const score = scores[i] as number;
          if (options.minScore !== undefined && score < options.minScore) {
            belowMin = true;
            break;
          }
          const entry = entries[labels[i] as number];
          if (entry && keep(entry, options)) matches.push({ entry, score });
        }
        if (matches.length >= options.topK || belowMin || k >= index.count) {
          return { matches, indexSize: index.count };
        }
        k *= 4;
      }
    },

    async loadPersisted(imageType, how, checkGallery) {
      const manifest = await store.readManifest(version, imageType);
      if (!manifest) return false;
      if (manifest.modelId !== modelId || manifest.dimension !== dimension || manifest.factory !== factory) {
        log.info(
          {
            imageType,
            persisted: { modelId: manifest.modelId, factory: manifest.factory },
            wanted: { modelId, factory },
          },
          "persisted index was built with another model or index type; it will be rebuilt",
        );
        return false;
      }
      if (checkGallery) {
        const current = await source.fingerprint(imageType);
        if (current !== manifest.galleryFingerprint) {
          log.info(
            { imageType, persisted: manifest.galleryFingerprint, current },
            "gallery changed since the index was built; it will be rebuilt",
          );
          return false;
        }
      }
      try {
        const loaded = await store.load(version, imageType, hnsw);
        serving.set(imageType, { loaded, source: how, servingSince: new Date().toISOString() });
        log.info({ imageType, count: loaded.manifest.count, source: how }, "index loaded");
        return true;
      } catch (err) {
        log.warn({ err, imageType }, "persisted index is unusable; it will be rebuilt");
        return false;
      }
    },

    async rebuild(imageType, onProgress) {
      const galleryFingerprint = await source.fingerprint(imageType);
      const gallery = await source.collect(imageType, onProgress);
      const index = buildVectorIndex({ dimension, factory, vectors: gallery.vectors, hnsw });
      const manifest = await store.save({
        index,
        entries: gallery.entries,
        manifest: {
          formatVersion: 1,
          matcherVersion: version,
          imageType,
          modelId,
          dimension,
          count: index.count,
          factory,
          galleryFingerprint,
          builtAt: new Date().toISOString(),
        },
      });
      const t0 = performance.now();
      serving.set(imageType, {
        loaded: { manifest, index, entries: gallery.entries },
        source: "built",
        servingSince: new Date().toISOString(),
      });
      const swapMs = performance.now() - t0;
      log.info(
        { imageType, count: index.count, failures: gallery.failures.length },
        "index rebuilt and swapped in",
      );
      return { manifest, failures: gallery.failures, swapMs };
    },
  };
}
