import type { Logger } from "pino";
import { adaptVector } from "../adapted/projection.js";
import type { TypePrior } from "../adapted/type-prior.js";
import { isExactFactory, resolveFactory } from "../index/factory.js";
import { DEFAULT_PLAN_LIMITS, filteredSearch } from "../index/filtered-search.js";
import {
  columnsFromEntries,
  entryAt,
  isFiltering,
  matchingLabels,
  type SearchFilter,
} from "../index/gallery-columns.js";
import {
  type IndexManifest,
  type IndexStore,
  indexVersionId,
  type LoadedIndex,
} from "../index/index.store.js";
import { IndexUnavailableError, type VectorIndex, type VectorIndexBackend } from "../index/vector-index.js";
import { errors } from "../shared/errors.js";
import { IMAGE_TYPES, type ImageType, type MatcherVersion } from "../shared/types.js";
import {
  type AdaptationService,
  type AdaptationSettings,
  type AdaptedIndex,
  builtManifest,
  createAdaptationService,
  type EmbeddingSpace,
  type IndexSettings,
} from "./adaptation.service.js";
import { createGalleryDelta, type GalleryDelta } from "./gallery-delta.js";
import type { GalleryProgress, GallerySource } from "./gallery-source.js";
import { type Match, type MergedMatches, mergeByType } from "./merge-by-type.js";

export type { AdaptationSettings, EmbeddingSpace, IndexSettings } from "./adaptation.service.js";
export { trainingLabel } from "./adaptation.service.js";
export type { Match, MergedMatches, SpacedMatch } from "./merge-by-type.js";

/** How the index being served came to be. */
/**
 * How the index being served came to be: built by this replica, loaded from its local cache, downloaded
 * from the artifact store (built by another replica), or served from the local cache while the database
 * was down (fallback).
 */
export type IndexSource = "built" | "loaded" | "downloaded" | "fallback";

/** What status shows of the adapted space of one index. */
export interface AdaptedSpaceState {
  /** The space searches get by default (`adapted` only when the gate accepted a projection). */
  served: EmbeddingSpace;
  /** Why, in one sentence (the cross-validation result, or why none ran). */
  reason: string;
  /** Cross-validated P@10 on the gallery: raw, and the best projection tried. */
  cvRawP10: number | null;
  cvAdaptedP10: number | null;
  /** The type prior for searches of both image types (descriptor, beta, cross-validated P@10), or why none. */
  typePrior: string | null;
  trainingFingerprint: string | null;
  /** Projection file beside the adapted index, and its size. */
  projectionFile: string | null;
  outDim: number | null;
  blend: number | null;
}

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
  /** Index version served (sha256 of its manifest, see `indexVersionId`); null when none. */
  indexVersionId: string | null;
  /** Images served beside the index since its build (added or relabelled into it), until a rebuild. */
  deltaAdded: number;
  /** Images of the index left out since its build (removed or relabelled out of it), until a rebuild. */
  deltaRemoved: number;
  /** The gallery change log's sequence number this index reflects (its build's, plus the changes replayed). */
  changeSeq: number | null;
  gallery: string;
  adaptedSpace: AdaptedSpaceState;
}

/** Search options after validation. */
export interface MatchOptions extends SearchFilter {
  /** Number of hits wanted, >= 1. */
  topK: number;
  /** Content hash of a gallery image to leave out ("find similar" must not answer with the query itself). */
  excludeContentSha256?: string | undefined;
  /** Space to rank in; `adapted` falls back to `raw` when the index has none. Default: adapted when served. */
  space?: EmbeddingSpace | undefined;
}

/**
 * One query for {@link Matcher.rank}: everything a search of one or both image types needs, in one call.
 */
export interface RankQuery {
  /** The query image's L2-normalised embedding (model dimension); the type prior leans by it. */
  embedding: Float32Array;
  /** The query image's texture descriptor, for a texture type prior; null when the model has none. */
  texture: Float32Array | null;
  /**
   * Searched instead of `embedding` when set (alpha-QE's expanded query, L2-normalised); the type prior
   * still leans by the image's own descriptors.
   */
  vector?: Float32Array | undefined;
  /** `all`: both types, merged into one ranking (with the type prior, when one is served). */
  imageType: ImageType | "all";
  /** Hits wanted, >= 1. */
  topK: number;
  filter: SearchFilter;
  /** Content hash of a gallery image to leave out ("find similar" must not answer with the query itself). */
  excludeContentSha256?: string | undefined;
  /** Space to rank in; `adapted` falls back to `raw` where none is served. Default: adapted when served. */
  space?: EmbeddingSpace | undefined;
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
   * Throws when `imageType` (`all`: either type) cannot be searched now, saying why (never built, or
   * reloading after a fault). Cheap: a search calls it before the costly embedding of its query image.
   * @throws DomainError INDEX_NOT_READY
   */
  assertReady(imageType: ImageType | "all"): void;
  /**
   * The one call a search makes of the index layer: searches one image type, or both merged into one
   * ranking (an empty type left out, the served type prior applied), checking readiness first.
   * @returns at most `topK` matches, best first, each with the space that ranked it; the searched indexes'
   *   summed size; `adapted` when any index was ranked in the adapted space.
   * @throws DomainError INDEX_NOT_READY when an index to search is not served, or is reloading.
   */
  rank(query: RankQuery): Promise<MergedMatches>;

  /**
   * Top matches for an L2-normalised query embedding; filters are applied in one pass (see
   * `filtered-search.ts`).
   * @throws DomainError INDEX_NOT_READY when no index is being served for `imageType`.
   */
  search(
    imageType: ImageType,
    query: Float32Array,
    options: MatchOptions,
  ): Promise<{ matches: Match[]; indexSize: number; space: EmbeddingSpace }>;
  /**
   * Loads the persisted index if its manifest matches the configured model and index type and, with
   * `checkGallery`, the gallery's current fingerprint. Checksums are verified in the background once it
   * is served; a mismatch takes it out of service.
   * @returns whether an index was loaded.
   */
  loadPersisted(
    imageType: ImageType,
    source: "loaded" | "downloaded" | "fallback",
    checkGallery: boolean,
  ): Promise<boolean>;
  /**
   * Whether the gallery of the served index changed since its build in a way the change log does not
   * replay (no watermark, or a change made outside it): then only a rebuild brings it up to date.
   */
  galleryChangedOutsideLog(imageType: ImageType): Promise<boolean>;
  /** The manifest of the index served for `imageType`, if any. */
  servedManifest(imageType: ImageType): IndexManifest | undefined;
  /** The manifest of the index persisted in the local cache for `imageType`, if any (after crash recovery). */
  persistedManifest(imageType: ImageType): Promise<IndexManifest | undefined>;
  /**
   * Rebuilds from the gallery source, checks its recall, persists it and swaps it in; the old index is
   * kept on any failure, including a recall below the floor.
   */
  rebuild(imageType: ImageType, onProgress: (p: GalleryProgress) => void): Promise<RebuildOutcome>;
  /** The index being served for `imageType`, if any (for operations and tests). */
  servedIndex(imageType: ImageType): VectorIndex | undefined;
  /**
   * Applies the gallery changes logged since the served indexes' last ones (added, relabelled, removed
   * images), so they are searchable without a rebuild. Concurrent calls share one read; a no-op for
   * sources without a change log.
   * @returns the change sequence number now reflected (null without a change log or a served index).
   * @throws when the change log cannot be read (database down); the served indexes stay as they were.
   */
  syncGallery(): Promise<number | null>;
  /** Releases every index (their workers). */
  close(): Promise<void>;
}

interface Serving {
  loaded: LoadedIndex;
  /** Changes since the build, served beside the index. */
  delta: GalleryDelta;
  /** The change log's sequence number the delta reflects. */
  changeSeq: number;
  versionId: string;
  source: IndexSource;
  servingSince: string;
  /** The same gallery in the adapted space, when the gate accepted a projection. */
  adapted?: AdaptedIndex | undefined;
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
  adaptation,
}: {
  version: MatcherVersion;
  source: GallerySource;
  store: IndexStore;
  backend: VectorIndexBackend;
  modelId: string;
  dimension: number;
  index: IndexSettings;
  logger: Logger;
  /** Omitted or disabled: indexes stay raw. V1 folder galleries always stay raw. */
  adaptation?: AdaptationSettings | undefined;
}): Matcher {
  const serving = new Map<ImageType, Serving>();
  const log = logger.child({ matcher: version });
  const params = { efConstruction: settings.efConstruction, efSearch: settings.efSearch };
  const limits = settings.planLimits ?? DEFAULT_PLAN_LIMITS;

  const adaptOn = adaptation?.enabled === true && version === "v2";
  const adapting = adaptOn
    ? createAdaptationService({
        version,
        source,
        modelId,
        dimension,
        backend,
        index: settings,
        adaptation,
        log,
      })
    : undefined;

  // Change-log reads and swaps run one at a time, so a swapped-in index never misses a change applied
  // to the one it replaces.
  let changeChain: Promise<unknown> = Promise.resolve();
  const serialized = <T>(run: () => Promise<T>): Promise<T> => {
    const next = changeChain.then(run, run);
    changeChain = next.catch(() => undefined);
    return next;
  };

  /**
   * Whether the changes since `manifest`'s build are the change log's to replay (and to compact by a
   * rebuild past a share), rather than the gallery fingerprint's to judge: the log has entries after the
   * build's watermark. An index without a watermark, or a gallery changed outside the log (SQL by hand),
   * is judged by its fingerprint, as before the log existed.
   */
  async function replaysChanges(manifest: IndexManifest): Promise<boolean> {
    if (!source.changes || manifest.changeWatermark === undefined) return false;
    return (await source.changes.watermark()) > manifest.changeWatermark;
  }

  /** A serving entry for a new index, with the changes logged since its build replayed on top. */
  async function prepared(
    imageType: ImageType,
    base: Omit<Serving, "delta" | "changeSeq">,
  ): Promise<Serving> {
    const from = base.loaded.manifest.changeWatermark ?? 0;
    const entry: Serving = {
      ...base,
      delta: createGalleryDelta({
        imageType,
        columns: base.loaded.columns,
        dimension,
        projection: base.adapted?.projection ?? null,
      }),
      changeSeq: from,
    };
    if (!source.changes) return entry;
    try {
      const { watermark, changed } = await source.changes.since(from);
      entry.delta.apply(changed);
      entry.changeSeq = watermark;
      if (changed.length > 0)
        log.info({ imageType, from, to: watermark, images: changed.length }, "gallery changes replayed");
    } catch (err) {
      log.warn({ err, imageType }, "gallery changes not replayed (database unreachable); retrying later");
    }
    return entry;
  }

  /** Serves `next` for `imageType` and releases what it replaces (after its queued searches). */
  function swapIn(imageType: ImageType, next: Serving | undefined) {
    const previous = serving.get(imageType);
    if (next) serving.set(imageType, next);
    else serving.delete(imageType);
    const close = (i: VectorIndex) =>
      i.close().catch((err) => log.warn({ err }, "closing the replaced index failed"));
    if (previous && previous.loaded.index !== next?.loaded.index) close(previous.loaded.index);
    if (previous?.adapted && previous.adapted.loaded.index !== next?.adapted?.loaded.index)
      close(previous.adapted.loaded.index);
  }

  function adaptedState(s: Serving | undefined): AdaptedSpaceState {
    const a = s?.loaded.manifest.adaptation;
    const p = s?.adapted;
    return {
      served: p ? "adapted" : "raw",
      reason: !adaptOn
        ? version === "v1"
          ? "V1 folder galleries stay raw (the projection learns from the database's labels)"
          : "adaptation is off (ADAPTED_SPACE=off)"
        : (a?.reason ?? "no rebuild has decided yet"),
      cvRawP10: a?.cvRawP10 ?? null,
      cvAdaptedP10: a?.cvAdaptedP10 ?? null,
      typePrior: a?.typePrior ?? null,
      trainingFingerprint: a?.trainingFingerprint ?? null,
      projectionFile: p?.loaded.manifest.projection?.file ?? null,
      outDim: p?.projection.outDim ?? null,
      blend: p?.projection.blend ?? null,
    };
  }

  /**
   * The served type prior (`src/adapted/type-prior.ts`) for searches of both image types in `space`, or
   * null when the adapted space is not served, not asked for, or has no type prior.
   */
  function servedTypePrior(space: EmbeddingSpace | undefined): TypePrior | null {
    const wanted = space ?? adaptation?.defaultSpace ?? "raw";
    if (wanted !== "adapted") return null;
    const defect = serving.get("defect");
    const normal = serving.get("normal");
    const prior = defect?.adapted?.projection.typePrior;
    if (!prior) return null;
    // Both indexes must come from the decision that learned it (one index may be older, e.g. after a
    // rebuild of the other type alone, or a fallback start that serves what it has).
    const fp = (s: Serving | undefined) => s?.loaded.manifest.adaptation?.trainingFingerprint;
    if (normal && normal.loaded.manifest.count > 0 && fp(normal) !== fp(defect)) return null;
    return prior;
  }

  /** Images searchable in the index served for `imageType`: its build's, less removed, plus added. */
  function servedCount(imageType: ImageType): number {
    const s = serving.get(imageType);
    const m = s?.loaded.manifest;
    return m && s ? m.count - s.delta.removedLabels.size + s.delta.addedCount : 0;
  }

  function assertTypeReady(imageType: ImageType) {
    const s = serving.get(imageType);
    if (!s) throw indexNotReadyError(version, imageType);
    if (!s.loaded.index.ready) throw reloadingErrorOf(version, imageType, "its worker is restarting");
  }

  const typesOf = (imageType: ImageType | "all"): readonly ImageType[] =>
    imageType === "all" ? IMAGE_TYPES : [imageType];

  const matcher: Matcher = {
    version,

    state(imageType) {
      const s = serving.get(imageType);
      const m = s?.loaded.manifest;
      const ef = s?.loaded.index.params.efSearch;
      return {
        version,
        imageType,
        ready: s?.loaded.index.ready === true,
        count: servedCount(imageType),
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
        indexVersionId: s?.versionId ?? null,
        deltaAdded: s?.delta.addedCount ?? 0,
        deltaRemoved: s?.delta.removedLabels.size ?? 0,
        changeSeq: s && source.changes ? s.changeSeq : null,
        gallery: source.description,
        adaptedSpace: adaptedState(s),
      };
    },

    assertReady(imageType) {
      for (const t of typesOf(imageType)) assertTypeReady(t);
    },

    async rank(query) {
      const types = typesOf(query.imageType);
      // Checked again here, not only before the embedding: an index may go out of service meanwhile.
      for (const t of types) assertTypeReady(t);
      const options: MatchOptions = {
        ...query.filter,
        topK: query.topK,
        excludeContentSha256: query.excludeContentSha256,
        space: query.space,
      };
      const vector = query.vector ?? query.embedding;
      // An empty type adds nothing to a merge (and its index may not be searchable at all).
      const searched = types.length === 1 ? types : types.filter((t) => servedCount(t) > 0);
      return mergeByType(
        await Promise.all(
          searched.map(async (t) => ({ imageType: t, ...(await matcher.search(t, vector, options)) })),
        ),
        query.imageType === "all" ? servedTypePrior(query.space) : null,
        { embedding: query.embedding, texture: query.texture },
        query.topK,
      );
    },

    async search(imageType, query, options) {
      const s = serving.get(imageType);
      if (!s) throw indexNotReadyError(version, imageType);
      const wanted = options.space ?? adaptation?.defaultSpace ?? "raw";
      const space: EmbeddingSpace = wanted === "adapted" && s.adapted ? "adapted" : "raw";
      const { index, columns } = space === "adapted" && s.adapted ? s.adapted.loaded : s.loaded;
      if (query.length !== s.loaded.index.dimension) {
        throw errors.indexNotReady(
          `The ${version} ${imageType} index holds ${s.loaded.index.dimension}-d vectors but the model gives ${query.length}-d; rebuild the index.`,
        );
      }
      const matching = isFiltering(options) ? matchingLabels(columns, options) : null;
      const exclude = options.excludeContentSha256;
      const { delta } = s;
      const removed = delta.removedLabels;
      try {
        const q = space === "adapted" && s.adapted ? adaptVector(s.adapted.projection, query) : query;
        const { hits } = await filteredSearch(index, q, {
          topK: options.topK,
          matching,
          minScore: options.minScore,
          drop:
            exclude === undefined && removed.size === 0
              ? undefined
              : (l) => removed.has(l) || (exclude !== undefined && columns.contentSha256[l] === exclude),
          // Tombstoned labels may take places among the candidates: ask for that many more.
          limits:
            removed.size === 0 ? limits : { ...limits, extra: limits.extra + Math.min(removed.size, 4096) },
        });
        const matches = hits.map(({ label, score }) => ({ entry: entryAt(columns, label), score }));
        if (delta.addedCount > 0) {
          matches.push(...delta.search(q, space, options.topK, options));
          matches.sort((a, b) => b.score - a.score);
          matches.length = Math.min(matches.length, options.topK);
        }
        return {
          matches,
          indexSize: index.count - removed.size + delta.addedCount,
          space,
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
      // Only asked when the gallery is checked: a fallback start (database down) serves what it has.
      const replays = checkGallery && (await replaysChanges(manifest));
      if (checkGallery && !replays) {
        const current = await source.fingerprint(imageType);
        if (current !== manifest.galleryFingerprint) {
          log.info(
            { imageType, persisted: manifest.galleryFingerprint, current },
            "gallery changed since the index was built; it will be rebuilt",
          );
          return false;
        }
      }
      const decided = manifest.adaptation;
      if (checkGallery && adaptOn && !replays) {
        // A projection learns from both image types: a change to either (or to a label) makes it stale.
        const current = await (adapting as AdaptationService).trainingFingerprint();
        if (!decided || decided.trainingFingerprint !== current) {
          log.info(
            { imageType, persisted: decided?.trainingFingerprint ?? null, current },
            "labelled gallery changed since the adapted space was decided; it will be rebuilt",
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
      let adapted: Serving["adapted"];
      if (adaptOn && decided?.space === "adapted") {
        try {
          adapted = await (adapting as AdaptationService).load(
            imageType,
            decided.trainingFingerprint,
            manifest.count,
          );
        } catch (err) {
          if (checkGallery) {
            await loaded.index.close();
            log.warn({ err, imageType }, "persisted adapted index is unusable; both will be rebuilt");
            return false;
          }
          log.warn({ err, imageType }, "persisted adapted index is unusable; serving the raw space only");
        }
      }
      const entry = await serialized(async () => {
        const e = await prepared(imageType, {
          loaded,
          versionId: indexVersionId(loaded.manifest),
          source: how,
          servingSince: new Date().toISOString(),
          adapted,
        });
        swapIn(imageType, e);
        return e;
      });
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
      // Read before the gallery: changes committed after it are replayed on top once served.
      const changeWatermark = source.changes ? await source.changes.watermark() : undefined;
      const galleryFingerprint = await source.fingerprint(imageType);
      const gallery = await source.collect(imageType, onProgress);
      const count = gallery.entries.length;
      const factory = resolveFactory(settings.factory, count, settings.auto);
      const exact = isExactFactory(factory);
      const columns = columnsFromEntries(imageType, gallery.entries);
      // Before the raw build: the build hands `gallery.vectors` over to the index's worker.
      const decided = adapting ? await adapting.decide(imageType, gallery) : undefined;
      const projection = decided?.projection;
      const adaptsThis = projection && (projection.scope === "all" || imageType === "defect");
      const adaptedVectors =
        projection && adaptsThis && count > 0
          ? await (adapting as AdaptationService).project(projection, gallery.vectors)
          : undefined;
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
      let adapted: Serving["adapted"];
      try {
        if (decided?.projection && adaptedVectors)
          adapted = await (adapting as AdaptationService).build(
            imageType,
            decided,
            adaptedVectors,
            factory,
            galleryFingerprint,
            columns,
          );
      } catch (err) {
        await index.close();
        throw err;
      }
      let manifest: IndexManifest;
      try {
        manifest = await store.save({
          index,
          columns,
          manifest: {
            ...builtManifest(
              { version, modelId, settings },
              imageType,
              dimension,
              factory,
              built,
              galleryFingerprint,
            ),
            ...(changeWatermark === undefined ? {} : { changeWatermark }),
            adaptation: decided
              ? {
                  space: adapted ? "adapted" : "raw",
                  reason:
                    count === 0
                      ? "empty index: nothing to adapt"
                      : projection && !adaptsThis
                        ? `the adapted space covers the defect index only; normal images keep the raw cosine (${decided.decision.reason})`
                        : decided.decision.reason,
                  trainingFingerprint: decided.fingerprint,
                  cvRawP10: decided.decision.raw?.p10 ?? null,
                  cvAdaptedP10: decided.decision.best?.p10 ?? null,
                  typePrior: decided.decision.typePriorReason,
                  fitMs: decided.decision.fitMs,
                }
              : null,
          },
        });
      } catch (err) {
        await index.close();
        await adapted?.loaded.index.close();
        throw err;
      }
      await serialized(async () =>
        swapIn(
          imageType,
          await prepared(imageType, {
            loaded: { manifest, index, columns },
            versionId: indexVersionId(manifest),
            source: "built",
            servingSince: new Date().toISOString(),
            adapted,
          }),
        ),
      );
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

    syncGallery() {
      const feed = source.changes;
      if (!feed) return Promise.resolve(null);
      return serialized(async () => {
        const served = [...serving.values()];
        if (served.length === 0) return null;
        const from = Math.min(...served.map((s) => s.changeSeq));
        const { watermark, changed } = await feed.since(from);
        // Applying a change an entry has seen already is harmless: each gives the image's state now.
        for (const s of serving.values()) {
          if (changed.length > 0) s.delta.apply(changed);
          s.changeSeq = Math.max(s.changeSeq, watermark);
        }
        if (changed.length > 0)
          log.debug({ from, to: watermark, images: changed.length }, "gallery changes applied");
        return watermark;
      });
    },

    async galleryChangedOutsideLog(imageType) {
      const manifest = serving.get(imageType)?.loaded.manifest;
      if (!manifest?.galleryFingerprint || (await replaysChanges(manifest))) return false;
      return manifest.galleryFingerprint !== (await source.fingerprint(imageType));
    },

    servedManifest: (imageType) => serving.get(imageType)?.loaded.manifest,

    async persistedManifest(imageType) {
      await store.recover(version, imageType);
      return store.readManifest(version, imageType);
    },

    async close() {
      const all = [...serving.values()];
      serving.clear();
      await Promise.all(
        all.flatMap((s) => [s.loaded.index.close(), ...(s.adapted ? [s.adapted.loaded.index.close()] : [])]),
      );
    },
  };
  return matcher;
}
