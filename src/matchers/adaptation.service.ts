import type { Logger } from "pino";
import { adaptVectorsOffThread, decideAdaptationOffThread } from "../adapted/adaptation.runner.js";
import {
  type AdaptationDecision,
  type GateSettings,
  type TrainingTextures,
  trainingRowIds,
} from "../adapted/cross-validation.js";
import { PROJECTION_FILE, parseProjection, serializeProjection } from "../adapted/projection.file.js";
import type { Projection } from "../adapted/projection.js";
import { isExactFactory } from "../index/factory.js";
import type { GalleryEntry } from "../index/gallery-entry.js";
import type { IndexStore, LoadedIndex } from "../index/index.store.js";
import type { BuiltIndex, VectorIndexBackend } from "../index/vector-index.js";
import { sha256 } from "../shared/hash.js";
import { IMAGE_TYPES, type ImageType, type MatcherVersion } from "../shared/types.js";
import { type CollectedGallery, type GallerySource, packVectorsYielding } from "./gallery-source.js";

/** An embedding space: the model's own (`raw`) or the one learned from the gallery's labels (`adapted`). */
export type EmbeddingSpace = "raw" | "adapted";

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

/** Index settings a matcher builds and loads with. */
export interface IndexSettings {
  /** INDEX_FACTORY: `auto` or a FAISS factory string. */
  factory: string;
  auto: import("../index/factory.js").AutoFactoryPolicy;
  efConstruction: number;
  efSearch: number;
  /** Smallest recall@10 a rebuilt approximate index must reach to be served (0-1). */
  recallFloor: number;
  /** Gallery vectors used as recall-check queries. */
  recallQueries: number;
  planLimits?: import("../index/filtered-search.js").PlanLimits | undefined;
}

/** The adapted twin of a served index: the gallery projected by the learned map, and the map. */
export interface AdaptedIndex {
  loaded: LoadedIndex;
  projection: Projection;
}

/** The gate's decision for one labelled gallery, with the projection it accepted (or null). */
export interface TrainingDecision {
  /** Fingerprint of what it learned from (see {@link AdaptationService.trainingFingerprint}). */
  fingerprint: string;
  decision: AdaptationDecision;
  projection: Projection | null;
}

/** Relevance class used to learn the projection: product and defect type, `normal` for normal images. */
export const trainingLabel = (e: GalleryEntry) => `${e.productCode}/${e.defectCode ?? "normal"}`;

/**
 * The manifest fields of a freshly built index, the raw and the adapted one alike (checksums are added by
 * the index store's save).
 */
export function builtManifest(
  { version, modelId, settings }: { version: MatcherVersion; modelId: string; settings: IndexSettings },
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

/**
 * The adapted space of one matcher: the training sample (both image types, with texture descriptors for
 * the type prior), the cross-validated decision (reused while the labelled gallery is unchanged), and
 * the adapted index's build, persistence and load. Fitting runs off the main thread
 * (`adaptation.runner.ts`).
 */
export function createAdaptationService({
  version,
  source,
  modelId,
  dimension,
  backend,
  index: settings,
  adaptation,
  log,
}: {
  version: MatcherVersion;
  source: GallerySource;
  modelId: string;
  dimension: number;
  backend: VectorIndexBackend;
  index: IndexSettings;
  adaptation: AdaptationSettings;
  log: Logger;
}) {
  const params = { efConstruction: settings.efConstruction, efSearch: settings.efSearch };
  /** The last decision, reused by the other image type's rebuild while the training gallery is unchanged. */
  let lastTraining: TrainingDecision | undefined;

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
    const rowIds = Int32Array.from(trainingRowIds(count, adaptation.gate));
    let part = 0;
    let first = 0;
    const rows = Array.from(rowIds, (r) => {
      while (r >= first + (parts[part]?.entries.length ?? 0)) first += parts[part++]?.entries.length ?? 0;
      const from = (parts[part] as CollectedGallery).vectors;
      return from.subarray((r - first) * dimension, (r - first + 1) * dimension);
    });
    const vectors = await packVectorsYielding(rows, dimension);
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
      settings: adaptation.gate,
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
    const vectors = await packVectorsYielding(
      Array.from(rowIds, (r) => rowOf.get(r) as Float32Array),
      dim,
    );
    return { dim, rowIds: Int32Array.from(rowIds), vectors };
  }

  /** Builds and persists the adapted index of `imageType` (projected, re-normalised gallery vectors). */
  async function buildAdapted(
    imageType: ImageType,
    decided: { fingerprint: string; projection: Projection | null },
    vectors: Float32Array,
    factory: string,
    galleryFingerprint: string,
    columns: LoadedIndex["columns"],
  ): Promise<AdaptedIndex> {
    const projection = decided.projection as Projection;
    const store2 = adaptation.store;
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
          ...builtManifest(
            { version, modelId, settings },
            imageType,
            width,
            factory,
            built,
            galleryFingerprint,
          ),
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
  async function loadAdapted(imageType: ImageType, trainingFp: string, count: number): Promise<AdaptedIndex> {
    const store2 = adaptation.store;
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
    trainingFingerprint,
    /** The decision for the current labelled gallery (`collected` is `imageType`'s, already read). */
    decide: training,
    /** Projects `vectors` (rows of `dimension`) off the main thread. */
    project: (projection: Projection, vectors: Float32Array) => adaptVectorsOffThread(projection, vectors),
    build: buildAdapted,
    load: loadAdapted,
  };
}

/** The adaptation service's type, derived from its factory. */
export type AdaptationService = ReturnType<typeof createAdaptationService>;
