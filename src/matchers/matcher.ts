import type { Logger } from "pino";
import { type AutoFactoryPolicy, isExactFactory, resolveFactory } from "../index/factory.js";
import { filteredSearch, type PlanLimits } from "../index/filtered-search.js";
import { columnsFromEntries, entryAt, isFiltering, matchingLabels } from "../index/gallery-columns.js";
import type { GalleryEntry } from "../index/gallery-entry.js";
import type { IndexManifest, IndexStore, LoadedIndex } from "../index/index.store.js";
import { IndexUnavailableError, type VectorIndex, type VectorIndexBackend } from "../index/vector-index.js";
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
  /** Factory string built (INDEX_FACTORY, with `auto` resolved by gallery size). */
  factory: string | null;
  /** HNSW efSearch in force; null for other index types. */
  efSearch: number | null;
  /** recall@10 the build measured against exact search; null for exact indexes. */
  recallAt10: number | null;
  /** The floor a rebuild must reach to be swapped in. */
  recallFloor: number;
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
  /** Time from the end of the FAISS build to the new index being served: recall check, persist, swap (ms). */
  swapMs: number;
}

/**
 * A matcher serves one index per image type over one gallery source. V1 and V2 are both this
 * interface; they differ in their {@link GallerySource}. An index is swapped in as one assignment, so a
 * search runs against either the old or the new index, never a mix.
 */
export interface Matcher {
  readonly version: MatcherVersion;
  state(imageType: ImageType): IndexState;
  /**
   * Throws when `imageType` cannot be searched now, saying why (never built, or reloading after a fault).
   * @throws DomainError INDEX_NOT_READY
   */
  assertReady(imageType: ImageType): void;
  /**
   * Top matches for an L2-normalised query embedding; filters are applied in one pass (see
   * `filtered-search.ts`).
   * @throws DomainError INDEX_NOT_READY when no index is being served for `imageType`.
   */
  search(
    imageType: ImageType,
    query: Float32Array,
    options: MatchOptions,
  ): Promise<{ matches: Match[]; indexSize: number }>;
  /**
   * Loads the persisted index if its manifest matches the configured model and index type and, with
   * `checkGallery`, the gallery's current fingerprint. Checksums are verified in the background once it
   * is served; a mismatch takes it out of service.
   * @returns whether an index was loaded.
   */
  loadPersisted(imageType: ImageType, source: "loaded" | "fallback", checkGallery: boolean): Promise<boolean>;
  /**
   * Rebuilds from the gallery source, checks its recall, persists it and swaps it in; the old index is
   * kept on any failure, including a recall below the floor.
   */
  rebuild(imageType: ImageType, onProgress: (p: GalleryProgress) => void): Promise<RebuildOutcome>;
  /** The index being served for `imageType`, if any (for operations and tests). */
  servedIndex(imageType: ImageType): VectorIndex | undefined;
  /** Releases every index (their workers). */
  close(): Promise<void>;
}

interface Serving {
  loaded: LoadedIndex;
  source: IndexSource;
  servingSince: string;
}

/** Index settings a matcher builds and loads with. */
export interface IndexSettings {
  /** INDEX_FACTORY: `auto` or a FAISS factory string. */
  factory: string;
  auto: AutoFactoryPolicy;
  efConstruction: number;
  efSearch: number;
  /** Smallest recall@10 a rebuilt approximate index must reach to be served (0-1). */
  recallFloor: number;
  /** Gallery vectors used as recall-check queries. */
  recallQueries: number;
  planLimits?: PlanLimits | undefined;
}

/** The error for a search against an index that is not being served. */
export function indexNotReadyError(version: MatcherVersion, imageType: ImageType, why?: string) {
  return errors.indexNotReady(
    why ??
      `The ${version} index for ${imageType} images is not ready yet: it is being built or has never been built. Check the status query, or run rebuildIndex.`,
    { version, imageType },
  );
}

function reloadingErrorOf(version: MatcherVersion, imageType: ImageType, why: string) {
  return indexNotReadyError(
    version,
    imageType,
    `The ${version} index for ${imageType} images is reloading after a fault (${why}); retry in a few seconds.`,
  );
}

/** Creates a matcher of `version` over `source`, persisting into `store`, indexes held by `backend`. */
export function createMatcher({
  version,
  source,
  store,
  backend,
  modelId,
  dimension,
  index: settings,
  logger,
}: {
  version: MatcherVersion;
  source: GallerySource;
  store: IndexStore;
  backend: VectorIndexBackend;
  modelId: string;
  dimension: number;
  index: IndexSettings;
  logger: Logger;
}): Matcher {
  const serving = new Map<ImageType, Serving>();
  const log = logger.child({ matcher: version });
  const params = { efConstruction: settings.efConstruction, efSearch: settings.efSearch };

  /** Serves `next` for `imageType` and releases what it replaces (after its queued searches). */
  function swapIn(imageType: ImageType, next: Serving | undefined) {
    const previous = serving.get(imageType);
    if (next) serving.set(imageType, next);
    else serving.delete(imageType);
    if (previous && previous.loaded.index !== next?.loaded.index) {
      previous.loaded.index.close().catch((err) => log.warn({ err }, "closing the replaced index failed"));
    }
  }

  return {
    version,

    state(imageType) {
      const s = serving.get(imageType);
      const m = s?.loaded.manifest;
      const ef = s?.loaded.index.params.efSearch;
      return {
        version,
        imageType,
        ready: s?.loaded.index.ready === true,
        count: m?.count ?? 0,
        dimension: m?.dimension ?? dimension,
        modelId: m?.modelId ?? null,
        factory: m?.factory ?? null,
        efSearch: ef ?? null,
        recallAt10: m?.recall?.recallAt10 ?? null,
        recallFloor: settings.recallFloor,
        builtAt: m?.builtAt ?? null,
        source: s?.source ?? null,
        servingSince: s?.servingSince ?? null,
        indexSha256: m?.indexSha256 ?? null,
        gallery: source.description,
      };
    },

    assertReady(imageType) {
      const s = serving.get(imageType);
      if (!s) throw indexNotReadyError(version, imageType);
      if (!s.loaded.index.ready) throw reloadingErrorOf(version, imageType, "its worker is restarting");
    },

    async search(imageType, query, options) {
      const s = serving.get(imageType);
      if (!s) throw indexNotReadyError(version, imageType);
      const { index, columns } = s.loaded;
      if (query.length !== index.dimension) {
        throw errors.indexNotReady(
          `The ${version} ${imageType} index holds ${index.dimension}-d vectors but the model gives ${query.length}-d; rebuild the index.`,
        );
      }
      const matching = isFiltering(options) ? matchingLabels(columns, options) : null;
      const exclude = options.excludeContentSha256;
      try {
        const { hits } = await filteredSearch(index, query, {
          topK: options.topK,
          matching,
          minScore: options.minScore,
          drop: exclude === undefined ? undefined : (l) => columns.contentSha256[l] === exclude,
          limits: settings.planLimits,
        });
        return {
          matches: hits.map(({ label, score }) => ({ entry: entryAt(columns, label), score })),
          indexSize: index.count,
        };
      } catch (err) {
        if (err instanceof IndexUnavailableError) throw reloadingErrorOf(version, imageType, err.message);
        throw err;
      }
    },

    async loadPersisted(imageType, how, checkGallery) {
      await store.recover(version, imageType);
      const manifest = await store.readManifest(version, imageType);
      if (!manifest) return false;
      const wantedFactory = resolveFactory(settings.factory, manifest.count, settings.auto);
      if (
        manifest.modelId !== modelId ||
        manifest.dimension !== dimension ||
        manifest.configuredFactory !== settings.factory ||
        manifest.factory !== wantedFactory
      ) {
        log.info(
          {
            imageType,
            persisted: { modelId: manifest.modelId, factory: manifest.factory },
            wanted: { modelId, factory: wantedFactory },
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
      let loaded: LoadedIndex;
      try {
        loaded = await store.load(version, imageType, backend, { efSearch: params.efSearch });
      } catch (err) {
        log.warn({ err, imageType }, "persisted index is unusable; it will be rebuilt");
        return false;
      }
      const entry: Serving = { loaded, source: how, servingSince: new Date().toISOString() };
      swapIn(imageType, entry);
      log.info({ imageType, count: loaded.manifest.count, source: how }, "index loaded");
      // Checksums after serving starts: hashing a large index would otherwise dominate startup.
      void store
        .verify(version, imageType, loaded.manifest)
        .then((problem) => {
          if (!problem) return log.debug({ imageType }, "persisted index checksums verified");
          log.error({ imageType, problem }, "persisted index is corrupt; it is no longer served, rebuild it");
          if (serving.get(imageType) === entry) swapIn(imageType, undefined);
        })
        .catch((err) => log.warn({ err, imageType }, "persisted index checksums could not be read"));
      return true;
    },

    async rebuild(imageType, onProgress) {
      const galleryFingerprint = await source.fingerprint(imageType);
      const gallery = await source.collect(imageType, onProgress);
      const count = gallery.entries.length;
      const factory = resolveFactory(settings.factory, count, settings.auto);
      const exact = isExactFactory(factory);
      const columns = columnsFromEntries(imageType, gallery.entries);
      const built = await backend.build({
        dimension,
        factory,
        vectors: gallery.vectors,
        params,
        recall: exact ? null : { queries: settings.recallQueries, seed: count },
      });
      const t0 = performance.now();
      const { index, recall } = built;
      if (recall && recall.recallAt10 < settings.recallFloor) {
        await index.close();
        throw new Error(
          `The new ${version} ${imageType} index (${factory}, ${count} images) reached recall@10 ${recall.recallAt10.toFixed(3)} against exact search, below the floor ${settings.recallFloor} (INDEX_RECALL_FLOOR); it was not swapped in. Raise INDEX_EF_SEARCH (now ${params.efSearch}) or INDEX_EF_CONSTRUCTION (now ${params.efConstruction}), or set INDEX_FACTORY=Flat`,
        );
      }
      let manifest: IndexManifest;
      try {
        manifest = await store.save({
          index,
          columns,
          manifest: {
            formatVersion: 2,
            matcherVersion: version,
            imageType,
            modelId,
            dimension,
            count: index.count,
            configuredFactory: settings.factory,
            factory,
            params: index.params,
            recall: recall
              ? { recallAt10: recall.recallAt10, queries: recall.queries, floor: settings.recallFloor }
              : null,
            buildMs: built.buildMs,
            galleryFingerprint,
            builtAt: new Date().toISOString(),
          },
        });
      } catch (err) {
        await index.close();
        throw err;
      }
      swapIn(imageType, {
        loaded: { manifest, index, columns },
        source: "built",
        servingSince: new Date().toISOString(),
      });
      const swapMs = performance.now() - t0;
      log.info(
        {
          imageType,
          count: index.count,
          factory,
          recallAt10: recall?.recallAt10,
          buildMs: Math.round(built.buildMs),
          failures: gallery.failures.length,
        },
        "index rebuilt and swapped in",
      );
      return { manifest, failures: gallery.failures, swapMs };
    },

    servedIndex: (imageType) => serving.get(imageType)?.loaded.index,

    async close() {
      const all = [...serving.values()];
      serving.clear();
      await Promise.all(all.map((s) => s.loaded.index.close()));
    },
  };
}
