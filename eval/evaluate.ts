import type { AdaptedSpaceState, EmbeddingSpace } from "../src/matchers/matcher.js";
import type { ImageType, MatcherVersion } from "../src/shared/types.js";
import type { ScratchFactory } from "../tools/shared/scratch-env.js";
import { type Distribution, distribution } from "../tools/shared/stats.js";
import { thumbnailVector } from "./baseline.js";
import type { EvalDataset } from "./dataset.js";
import {
  computeFeatures,
  type DatasetFeatures,
  type Featurizer,
  modelFeaturizer,
  rankExact,
} from "./direct-run.js";
import { meanMetrics, type RetrievalMetrics } from "./metrics.js";
import { type RankedQuery, type ScoredQuery, scoreRankings } from "./ranking.js";
import { runThroughService, type ServiceRun } from "./service-run.js";

/** Averages over all queries and per relevance class. */
export interface MethodSummary {
  overall: RetrievalMetrics;
  perClass: { label: string; queries: number; gallery: number; metrics: RetrievalMetrics }[];
}

/** An optional retrieval technique (a service setting, off by default), measured by running the service with its settings. */
export interface Technique {
  name: string;
  /** Service variables that turn it on. */
  vars: Record<string, string>;
}

/**
 * The optional techniques that are service settings, each off by default; `npm run eval` runs the service
 * once more per technique with it on.
 */
export const OPTIONAL_TECHNIQUES: readonly Technique[] = [
  { name: "alpha-QE, top 3", vars: { QUERY_EXPANSION_TOP_N: "3" } },
  {
    name: "multi-view 2 x 2 at 384, GeM",
    vars: { MULTI_VIEW_GRID: "2", MULTI_VIEW_SIZE: "384", MULTI_VIEW_POOL: "gem" },
  },
];

/** One technique through the service: the adapted space with it on (ALL and own type), and raw ALL. */
export interface TechniqueSummary extends Technique {
  modelId: string;
  adaptedAll: MethodSummary;
  adaptedOwnType: MethodSummary;
  rawAll: MethodSummary;
  /** Index stage (ms) of the adapted own-type and ALL searches, and the whole search (ms). */
  indexMs: Distribution;
  allIndexMs: Distribution;
  searchMs: Distribution;
  ingestImagesPerSecond: number;
  /** What the gate chose for the type prior with the technique on. */
  typePrior: string | null;
}

/** Everything measured on one dataset. */
export interface DatasetEvaluation {
  /** The optional techniques, each run through the service with it on (empty when not asked for). */
  techniques: TechniqueSummary[];
  dataset: string;
  root: string;
  queries: number;
  gallery: number;
  galleryRows: number;
  checks: EvalDataset["checks"];
  modelId: string;
  version: MatcherVersion;
  /** topK of each service search; mAP@topK in the tables. */
  topK: number;
  ingest: ServiceRun["ingest"];
  rebuildMs: number;
  indexSizes: ServiceRun["indexSizes"];
  /** Server-side time of one search call (ms). */
  searchMs: Distribution;
  /** Pooled retrieval (both indexes, merged by score). */
  service: MethodSummary;
  direct: MethodSummary;
  baseline: MethodSummary;
  /** The model used directly with the ranking untruncated: mAP over the full gallery. */
  directFullMap: number;
  baselineFullMap: number;
  /** Retrieval in the query's own image-type index only. */
  ownType: { service: MethodSummary; direct: MethodSummary };
  /** Service in the raw space vs the model used directly. */
  agreement: {
    /** Share of queries whose top-10 sets are identical. */
    top10Identical: number;
    /** Largest |service - direct| over the overall figures. */
    maxOverallDelta: number;
  };
  featureMs: { direct: number; baseline: number };
  /** Per-query figures of the service (pooled). */
  perQuery: ScoredQuery[];
  /** The service in each embedding space (the default space is also `service` above). */
  spaces: Record<EmbeddingSpace, SpaceSummary>;
  /** The rebuild's cross-validation decision per index. */
  adaptation: Record<ImageType, AdaptedSpaceState>;
}

/** One space through the service. */
export interface SpaceSummary {
  service: MethodSummary;
  ownType: MethodSummary;
  /** Server-side time per search call (ms) and its FAISS stage, projection included. */
  searchMs: Distribution;
  indexMs: Distribution;
  /** Index stage of the `imageType: ALL` searches (both indexes, merge and type prior included), ms. */
  allIndexMs: Distribution;
  /** Share of queries whose suggested (product, defect type) is theirs: the own-type search's, and the ALL search's. */
  suggestionAccuracy: { ownType: number; merged: number };
}

function summarise(dataset: EvalDataset, scored: readonly ScoredQuery[]): MethodSummary {
  const labels = [...new Set(dataset.queries.map((q) => q.label))].sort();
  return {
    overall: meanMetrics(scored.map((s) => s.metrics)),
    perClass: labels.map((label) => ({
      label,
      queries: scored.filter((s) => s.label === label).length,
      gallery: dataset.gallery.filter((g) => g.label === label).length,
      metrics: meanMetrics(scored.filter((s) => s.label === label).map((s) => s.metrics)),
    })),
  };
}

const baselineFeaturizer: Featurizer = {
  dimension: 256,
  gallery: (images) => Promise.all(images.map((i) => thumbnailVector(i.bytes))),
  query: (image) => thumbnailVector(image.bytes),
};

/**
 * Evaluates one dataset: through the service, with the model used directly (exact search), and with the
 * thumbnail baseline (exact search), on the same queries and relevance.
 * @param log - progress lines (stderr).
 */
export async function evaluateDataset({
  factory,
  dataset,
  preset,
  version,
  maxTopK,
  overrides = {},
  techniques = [],
  log,
}: {
  factory: ScratchFactory;
  dataset: EvalDataset;
  preset: string;
  version: MatcherVersion;
  maxTopK: number;
  /** Extra service variables (e.g. MULTI_VIEW_GRID), applied to the service under test. */
  overrides?: Record<string, string>;
  /** Each is run through the service once more, on top of `overrides`, and reported beside the default. */
  techniques?: readonly Technique[];
  log: (line: string) => void;
}): Promise<DatasetEvaluation> {
  let directFeatures: DatasetFeatures | undefined;
  log(
    `${dataset.name}: ingesting ${dataset.galleryRows.length} gallery images, searching ${dataset.queries.length} queries`,
  );
  const run = await runThroughService({
    factory,
    dataset,
    preset,
    version,
    maxTopK,
    overrides,
    withApp: async (app) => {
      log(`${dataset.name}: embedding gallery and queries with the model directly`);
      directFeatures = await computeFeatures(dataset, modelFeaturizer(app.embedder));
    },
  });
  if (!directFeatures) throw new Error("direct features missing");
  log(`${dataset.name}: baseline thumbnails`);
  const baseFeatures = await computeFeatures(dataset, baselineFeaturizer);
  const score = (r: readonly RankedQuery[]) => scoreRankings(dataset.gallery, r);
  const svc = score(run.pooled);
  const direct = rankExact(dataset, directFeatures, run.topK);
  const dir = score(direct.pooled);
  const base = score(rankExact(dataset, baseFeatures, run.topK).pooled);
  const full = (f: DatasetFeatures) =>
    meanMetrics(score(rankExact(dataset, f, Number.POSITIVE_INFINITY).pooled).map((s) => s.metrics)).ap;
  const service = summarise(dataset, svc);
  const directSummary = summarise(dataset, dir);
  // The service's raw space must equal the model used directly (the adapted space is compared with raw
  // in the spaces table).
  const svcRaw = score(run.spaces.raw.pooled);
  const rawSummary = summarise(dataset, svcRaw);
  const techniqueRuns: TechniqueSummary[] = [];
  for (const t of techniques) {
    log(
      `${dataset.name}: again with ${t.name} (${Object.entries(t.vars)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")})`,
    );
    const r = await runThroughService({
      factory,
      dataset,
      preset,
      version,
      maxTopK,
      overrides: { ...overrides, ...t.vars },
    });
    techniqueRuns.push({
      ...t,
      modelId: r.modelId,
      adaptedAll: summarise(dataset, score(r.spaces.adapted.pooled)),
      adaptedOwnType: summarise(dataset, score(r.spaces.adapted.ownType)),
      rawAll: summarise(dataset, score(r.spaces.raw.pooled)),
      indexMs: distribution(r.spaces.adapted.indexMs),
      allIndexMs: distribution(r.spaces.adapted.allIndexMs),
      searchMs: distribution(r.spaces.adapted.searchMs),
      ingestImagesPerSecond: r.ingest.imagesPerSecond,
      typePrior: Object.values(r.adaptation).find((a) => a.typePrior)?.typePrior ?? null,
    });
  }
  const identical = svcRaw.filter((s, i) => {
    const d = dir[i]?.top10 ?? [];
    return s.top10.length === d.length && s.top10.every((h) => d.includes(h));
  }).length;
  return {
    dataset: dataset.name,
    root: dataset.root,
    queries: dataset.queries.length,
    gallery: dataset.gallery.length,
    galleryRows: dataset.galleryRows.length,
    checks: dataset.checks,
    modelId: run.modelId,
    version,
    topK: run.topK,
    ingest: run.ingest,
    rebuildMs: run.rebuildMs,
    indexSizes: run.indexSizes,
    searchMs: distribution(run.searchMs),
    service,
    direct: directSummary,
    baseline: summarise(dataset, base),
    directFullMap: full(directFeatures),
    baselineFullMap: full(baseFeatures),
    ownType: {
      service: summarise(dataset, score(run.ownType)),
      direct: summarise(dataset, score(direct.ownType)),
    },
    agreement: {
      top10Identical: identical / Math.max(1, svcRaw.length),
      maxOverallDelta: Math.max(
        ...(Object.keys(service.overall) as (keyof RetrievalMetrics)[]).map((k) =>
          Math.abs(rawSummary.overall[k] - directSummary.overall[k]),
        ),
      ),
    },
    featureMs: { direct: directFeatures.featureMs, baseline: baseFeatures.featureMs },
    perQuery: svc,
    spaces: Object.fromEntries(
      (["raw", "adapted"] as const).map((space) => {
        const r = run.spaces[space];
        const accuracy = (pick: (x: { ownType: string | null; merged: string | null }) => string | null) =>
          r.suggestions.filter((x, i) => pick(x) === dataset.queries[i]?.label).length /
          Math.max(1, r.suggestions.length);
        return [
          space,
          {
            service: summarise(dataset, score(r.pooled)),
            ownType: summarise(dataset, score(r.ownType)),
            searchMs: distribution(r.searchMs),
            indexMs: distribution(r.indexMs),
            allIndexMs: distribution(r.allIndexMs),
            suggestionAccuracy: { ownType: accuracy((x) => x.ownType), merged: accuracy((x) => x.merged) },
          },
        ];
      }),
    ) as Record<EmbeddingSpace, SpaceSummary>,
    adaptation: run.adaptation,
    techniques: techniqueRuns,
  };
}
