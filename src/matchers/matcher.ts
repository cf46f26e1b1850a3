import type { Logger } from "pino";
import { adaptVectorsOffThread, decideAdaptationOffThread } from "../adapted/adaptation.runner.js";
import {
  type AdaptationDecision,
  type GateSettings,
  type TrainingTextures,
  trainingRowIds,
} from "../adapted/cross-validation.js";
import { PROJECTION_FILE, parseProjection, serializeProjection } from "../adapted/projection.file.js";
import { adaptVector, type Projection } from "../adapted/projection.js";
import type { TypePrior } from "../adapted/type-prior.js";
import { type AutoFactoryPolicy, isExactFactory, resolveFactory } from "../index/factory.js";
import { filteredSearch, type PlanLimits } from "../index/filtered-search.js";
import { columnsFromEntries, entryAt, isFiltering, matchingLabels } from "../index/gallery-columns.js";
import type { GalleryEntry } from "../index/gallery-entry.js";
import {
  type IndexManifest,
  type IndexStore,
  indexVersionId,
  type LoadedIndex,
} from "../index/index.store.js";
import {
  type BuiltIndex,
  IndexUnavailableError,
  type VectorIndex,
  type VectorIndexBackend,
} from "../index/vector-index.js";
import { errors } from "../shared/errors.js";
import { sha256 } from "../shared/hash.js";
import { IMAGE_TYPES, type ImageType, type MatcherVersion } from "../shared/types.js";
import type { CollectedGallery, GalleryProgress, GallerySource } from "./gallery-source.js";

/** How the index being served came to be. */
/**
 * How the index being served came to be: built by this replica, loaded from its local cache, downloaded
 * from the artifact store (built by another replica), or served from the local cache while the database
 * was down (fallback).
 */
export type IndexSource = "built" | "loaded" | "downloaded" | "fallback";

/** An embedding space: the model's own (`raw`) or the one learned from the gallery's labels (`adapted`). */
export type EmbeddingSpace = "raw" | "adapted";

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
  gallery: string;
  adaptedSpace: AdaptedSpaceState;
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
  /** Space to rank in; `adapted` falls back to `raw` when the index has none. Default: adapted when served. */
  space?: EmbeddingSpace | undefined;
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
  ): Promise<{ matches: Match[]; indexSize: number; space: EmbeddingSpace }>;
  /**
   * The served type prior (`src/adapted/type-prior.ts`) for searches of both image types in `space`, or
   * null when the adapted space is not served, not asked for, or has no type prior.
   */
  typePrior(space: EmbeddingSpace | undefined): TypePrior | null;
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
  /** The gallery source's current fingerprint of `imageType` (what a persisted index was built from). */
  galleryFingerprint(imageType: ImageType): Promise<string>;
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
  /** Releases every index (their workers). */
  close(): Promise<void>;
}

interface Serving {
  loaded: LoadedIndex;
  versionId: string;
  source: IndexSource;
  servingSince: string;
  /** The same gallery in the adapted space, when the gate accepted a projection. */
  adapted?: { loaded: LoadedIndex; projection: Projection } | undefined;
}

/** Adaptation settings of a matcher. */
export interface AdaptationSettings {
  /** Learn and gate a projection at rebuilds (ADAPTED_SPACE). */
  enabled: boolean;
  /** Space searches use when the request names none (SEARCH_DEFAULT_SPACE). */
  defaultSpace: EmbeddingSpace;
  gate: GateSettings;
  /** Where adapted indexes (and their projections) are persisted. */
  store: IndexStore;
}

/** Relevance class used to learn the projection: product and defect type, `normal` for normal images. */
export const trainingLabel = (e: GalleryEntry) => `${e.productCode}/${e.defectCode ?? "normal"}`;

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

  const adaptOn = adaptation?.enabled === true && version === "v2";
  /** The last decision, reused by the other image type's rebuild while the training gallery is unchanged. */
  let lastTraining:
    | { fingerprint: string; decision: AdaptationDecision; projection: Projection | null }
    | undefined;

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

  /** Fingerprint of everything a projection learns from: both image types' galleries with their labels. */
  async function trainingFingerprint(): Promise<string> {
    const parts = await Promise.all(IMAGE_TYPES.map(async (t) => `${t}:${await source.fingerprint(t)}`));
    // The type prior learns from texture descriptors too: another texture tensor is another training set.
    const texture = source.textureModelId ? `|${source.textureModelId}` : "";
    return `${modelId}${texture}|${parts.join("|")}`;
  }

  /**
   * The gate's decision for the current labelled gallery (both image types, so the two indexes share one
   * space and merged scores stay comparable), reusing the last one while the gallery is unchanged.
   */
  async function training(
    imageType: ImageType,
    collected: { entries: GalleryEntry[]; vectors: Float32Array },
  ) {
    const fingerprint = await trainingFingerprint();
    if (lastTraining?.fingerprint === fingerprint) return lastTraining;
    const other = IMAGE_TYPES.filter((t) => t !== imageType);
    const parts = [collected];
    for (const t of other) parts.push(await source.collect(t, () => {}));
    const count = parts.reduce((n, p) => n + p.entries.length, 0);
    const labels: string[] = [];
    const isDefect: boolean[] = [];
    for (const p of parts) {
      for (const e of p.entries) {
        labels.push(trainingLabel(e));
        isDefect.push(e.imageType === "defect");
      }
    }
    // Only the rows the gate reads (at most ~24,000), not a second copy of the whole gallery.
    const rowIds = Int32Array.from(trainingRowIds(count, adaptation?.gate));
    const vectors = new Float32Array(rowIds.length * dimension);
    let part = 0;
    let first = 0;
    rowIds.forEach((r, i) => {
      while (r >= first + (parts[part]?.entries.length ?? 0)) first += parts[part++]?.entries.length ?? 0;
      const from = (parts[part] as CollectedGallery).vectors;
      vectors.set(from.subarray((r - first) * dimension, (r - first + 1) * dimension), i * dimension);
    });
    const textures = await trainingTextures(
      parts.flatMap((p) => p.entries),
      rowIds,
    );
    const { decision, projection } = await decideAdaptationOffThread({
      vectors,
      rowIds,
      dim: dimension,
      labels,
      isDefect,
      textures,
      settings: adaptation?.gate,
    });
    log.info(
      {
        space: decision.space,
        reason: decision.reason,
        fitMs: Math.round(decision.fitMs),
        images: count,
        typePrior: decision.typePriorReason,
      },
      "adapted space decided",
    );
    lastTraining = { fingerprint, decision, projection };
    return lastTraining;
  }

  /**
   * Texture descriptors of the training rows the gate reads (`trainingRowIds`), computed and stored where
   * missing; undefined when the source or model has none, or one of them has none (the type prior then
   * learns from the embedding alone).
   */
  async function trainingTextures(
    entries: readonly GalleryEntry[],
    rowIds: Int32Array,
  ): Promise<TrainingTextures | undefined> {
    if (!source.collectTextures) return undefined;
    // Only the rows the gate reads (a sample of at most 20,000): a million descriptors would be 4.6 GB.
    const wanted = new Map<number, number>();
    for (const r of rowIds) {
      const id = entries[r]?.imageId;
      if (id !== null && id !== undefined) wanted.set(id, r);
    }
    const rowOf = new Map<number, Float32Array>();
    let dim = 0;
    for (const t of IMAGE_TYPES) {
      const c = await source.collectTextures(
        t,
        () => {},
        (id) => wanted.has(id),
      );
      const width = c.entries.length > 0 ? c.vectors.length / c.entries.length : 0;
      c.entries.forEach((e, i) => {
        const r = e.imageId === null ? undefined : wanted.get(e.imageId);
        if (r !== undefined) rowOf.set(r, c.vectors.subarray(i * width, (i + 1) * width));
      });
      dim ||= width;
    }
    const missing = rowIds.filter((r) => !rowOf.has(r)).length;
    if (dim === 0 || missing > 0) {
      log.warn({ missing }, "texture descriptors missing; the type prior learns from the embedding only");
      return undefined;
    }
    const vectors = new Float32Array(rowIds.length * dim);
    rowIds.forEach((r, i) => {
      vectors.set(rowOf.get(r) as Float32Array, i * dim);
    });
    return { dim, rowIds: Int32Array.from(rowIds), vectors };
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

  /** The manifest fields of a freshly built index, the raw and the adapted one alike. */
  function builtManifest(
    imageType: ImageType,
    dimension: number,
    factory: string,
    built: BuiltIndex,
    galleryFingerprint: string,
  ) {
    const { index, recall } = built;
    return {
      formatVersion: 2 as const,
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
    };
  }

  /** Builds and persists the adapted index of `imageType` (projected, re-normalised gallery vectors). */
  async function buildAdapted(
    imageType: ImageType,
    decided: { fingerprint: string; projection: Projection | null },
    vectors: Float32Array,
    factory: string,
    galleryFingerprint: string,
    columns: LoadedIndex["columns"],
  ): Promise<NonNullable<Serving["adapted"]>> {
    const projection = decided.projection as Projection;
    const store2 = (adaptation as AdaptationSettings).store;
    const width = projection.inDim + projection.outDim;
    const exact = isExactFactory(factory);
    const built = await backend.build({
      dimension: width,
      factory,
      vectors,
      params,
      recall: exact ? null : { queries: settings.recallQueries, seed: columns.count },
    });
    const { index, recall } = built;
    try {
      if (recall && recall.recallAt10 < settings.recallFloor)
        throw new Error(
          `The adapted ${version} ${imageType} index reached recall@10 ${recall.recallAt10.toFixed(3)}, below the floor ${settings.recallFloor}`,
        );
      const text = serializeProjection(projection);
      const manifest = await store2.save({
        index,
        columns,
        extraFiles: { [PROJECTION_FILE]: text },
        manifest: {
          ...builtManifest(imageType, width, factory, built, galleryFingerprint),
          space: "adapted",
          projection: {
            file: PROJECTION_FILE,
            sha256: sha256(text),
            trainingFingerprint: decided.fingerprint,
            params: { shrinkage: projection.shrinkage, blend: projection.blend, outDim: projection.outDim },
          },
        },
      });
      return { loaded: { manifest, index, columns }, projection };
    } catch (err) {
      await index.close();
      throw err;
    }
  }

  /**
   * Loads the persisted adapted index of `imageType` and its projection, checking them against the raw
   * index's decision.
   * @throws Error when missing, corrupt or learned from another gallery.
   */
  async function loadAdapted(
    imageType: ImageType,
    trainingFp: string,
    count: number,
  ): Promise<NonNullable<Serving["adapted"]>> {
    const store2 = (adaptation as AdaptationSettings).store;
    await store2.recover(version, imageType);
    const m = await store2.readManifest(version, imageType);
    if (!m?.projection) throw new Error("no persisted adapted index");
    if (m.projection.trainingFingerprint !== trainingFp || m.modelId !== modelId || m.count !== count)
      throw new Error("the persisted adapted index was learned from another gallery or model");
    const text = await store2.readExtra(version, imageType, m.projection.file);
    if (text === undefined || sha256(text) !== m.projection.sha256)
      throw new Error(`${m.projection.file} is missing or does not match its manifest checksum`);
    const projection = parseProjection(text);
    const loaded = await store2.load(version, imageType, backend, { efSearch: params.efSearch });
    return { loaded, projection };
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
        indexVersionId: s?.versionId ?? null,
        gallery: source.description,
        adaptedSpace: adaptedState(s),
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
      try {
        const q = space === "adapted" && s.adapted ? adaptVector(s.adapted.projection, query) : query;
        const { hits } = await filteredSearch(index, q, {
          topK: options.topK,
          matching,
          minScore: options.minScore,
          drop: exclude === undefined ? undefined : (l) => columns.contentSha256[l] === exclude,
          limits: settings.planLimits,
        });
        return {
          matches: hits.map(({ label, score }) => ({ entry: entryAt(columns, label), score })),
          indexSize: index.count,
          space,
        };
      } catch (err) {
        if (err instanceof IndexUnavailableError) throw reloadingErrorOf(version, imageType, err.message);
        throw err;
      }
    },

    typePrior(space) {
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
      const decided = manifest.adaptation;
      if (checkGallery && adaptOn) {
        // A projection learns from both image types: a change to either (or to a label) makes it stale.
        const current = await trainingFingerprint();
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
          adapted = await loadAdapted(imageType, decided.trainingFingerprint, manifest.count);
        } catch (err) {
          if (checkGallery) {
            await loaded.index.close();
            log.warn({ err, imageType }, "persisted adapted index is unusable; both will be rebuilt");
            return false;
          }
          log.warn({ err, imageType }, "persisted adapted index is unusable; serving the raw space only");
        }
      }
      const entry: Serving = {
        loaded,
        versionId: indexVersionId(loaded.manifest),
        source: how,
        servingSince: new Date().toISOString(),
        adapted,
      };
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
      // Before the raw build: the build hands `gallery.vectors` over to the index's worker.
      const decided = adaptOn ? await training(imageType, gallery) : undefined;
      const projection = decided?.projection;
      const adaptsThis = projection && (projection.scope === "all" || imageType === "defect");
      const adaptedVectors =
        projection && adaptsThis && count > 0
          ? await adaptVectorsOffThread(projection, gallery.vectors)
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
          adapted = await buildAdapted(
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
            ...builtManifest(imageType, dimension, factory, built, galleryFingerprint),
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
      swapIn(imageType, {
        loaded: { manifest, index, columns },
        versionId: indexVersionId(manifest),
        source: "built",
        servingSince: new Date().toISOString(),
        adapted,
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

    galleryFingerprint: (imageType) => source.fingerprint(imageType),

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
}
