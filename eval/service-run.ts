import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { App } from "../src/app.js";
import type { IngestSummary } from "../src/ingest/ingest.service.js";
import { exportV1Gallery } from "../src/ingest/v1-gallery.export.js";
import type { AdaptedSpaceState, EmbeddingSpace } from "../src/matchers/matcher.js";
import { type DefectSuggestion, suggestDefectType } from "../src/search/defect-suggestion.js";
import type { SearchHit } from "../src/search/search.service.js";
import { IMAGE_TYPES, type ImageType, type MatcherVersion } from "../src/shared/types.js";
import type { ScratchFactory } from "../tools/shared/scratch-env.js";
import type { EvalDataset } from "./dataset.js";
import type { RankedQuery } from "./ranking.js";

/** What running a dataset through the service produced. */
export interface ServiceRun {
  modelId: string;
  dimension: number;
  ingest: Omit<IngestSummary, "failures"> & { failures: number };
  rebuildMs: number;
  /** Gallery size per index, as the service reports it. */
  indexSizes: Record<ImageType, number>;
  /** topK asked per search (the service's MAX_TOP_K or the index size, whichever is smaller). */
  topK: number;
  /** Both indexes searched, hits merged by score: ranks the whole labelled gallery. */
  pooled: RankedQuery[];
  /** Only the index of the query's own image type (what a client that knows the type gets). */
  ownType: RankedQuery[];
  /** Server-side total time per search call (ms). */
  searchMs: number[];
  /** The same queries ranked in each space (`pooled`/`ownType` above are the default space's). */
  spaces: Record<EmbeddingSpace, SpaceRun>;
  /** What the rebuild's cross-validation decided, per index. */
  adaptation: Record<ImageType, AdaptedSpaceState>;
}

/** One space's rankings, timings and suggestions. */
export interface SpaceRun {
  pooled: RankedQuery[];
  ownType: RankedQuery[];
  /** Server-side total time per search call (ms). */
  searchMs: number[];
  /** Server-side FAISS stage per search call, projection included (ms). */
  indexMs: number[];
  /** The same for each `imageType: ALL` search (both indexes, merge and type prior included). */
  allIndexMs: number[];
  /** Per query: the suggestion of the own-type search, and that of the ALL ranking (both the service's vote of its top 10). */
  suggestions: { ownType: string | null; merged: string | null }[];
}

/**
 * Runs one dataset through the real service: gallery ingested with `app.ingest` (decode, preprocess,
 * inference, database write, object upload), indexes rebuilt by the rebuild job, then every query image
 * sent as base64 to `app.search` against each non-empty index.
 * @param withApp - called with the started app before it closes (the direct-model comparison reuses its
 *   loaded model).
 */
export async function runThroughService({
  factory,
  dataset,
  preset,
  version,
  maxTopK,
  overrides = {},
  withApp,
}: {
  factory: ScratchFactory;
  dataset: EvalDataset;
  preset: string;
  version: MatcherVersion;
  maxTopK: number;
  overrides?: Record<string, string>;
  withApp?: (app: App) => Promise<void>;
}): Promise<ServiceRun> {
  const vars: Record<string, string> = { MODEL_PRESET: preset, MAX_TOP_K: String(maxTopK), ...overrides };
  let v1Dir: string | undefined;
  if (version === "v1") {
    // V1 reads a folder of {product}_{defect}_{name} files: write one from the same gallery rows.
    v1Dir = await mkdtemp(path.join(os.tmpdir(), "defect-lens-v1-"));
    await exportV1Gallery({ images: dataset.galleryRows, outDir: v1Dir });
    vars.V1_GALLERY_DIR = v1Dir;
  }
  const scratch = await factory.create(`eval_${dataset.name}`, vars);
  const app = await scratch.createApp();
  try {
    const summary = await app.ingest.ingest(dataset.galleryRows);
    const t0 = performance.now();
    const queued = await app.jobs.start({
      targets: IMAGE_TYPES.map((imageType) => ({ version, imageType })),
      trigger: "admin",
    });
    const task = await app.jobs.untilDone(queued.id);
    const rebuildMs = performance.now() - t0;
    if (task.status !== "succeeded") throw new Error(`rebuild failed: ${task.error}`);
    const matcher = app.matchers.get(version);
    if (!matcher) throw new Error(`matcher ${version} not configured`);
    const indexSizes = { defect: matcher.state("defect").count, normal: matcher.state("normal").count };
    const topK = Math.min(maxTopK, Math.max(indexSizes.defect, indexSizes.normal));
    const spaces: Record<EmbeddingSpace, SpaceRun> = {
      raw: { pooled: [], ownType: [], searchMs: [], indexMs: [], allIndexMs: [], suggestions: [] },
      adapted: { pooled: [], ownType: [], searchMs: [], indexMs: [], allIndexMs: [], suggestions: [] },
    };
    const labelOfHit = (h: { productCode: string; defectCode: string | null }) =>
      `${h.productCode}/${h.defectCode ?? "good"}`;
    for (const query of dataset.queries) {
      const base64 = query.bytes.toString("base64");
      for (const space of ["raw", "adapted"] as const) {
        const run = spaces[space];
        const byType = new Map<ImageType, SearchHit[]>();
        let own: string | null = null;
        for (const imageType of IMAGE_TYPES) {
          if (indexSizes[imageType] === 0) continue;
          const result = await app.search.search({
            image: { base64 },
            imageType,
            topK: Math.min(topK, indexSizes[imageType]),
            version,
            space,
          });
          run.searchMs.push(result.timing.totalMs);
          run.indexMs.push(result.timing.searchMs);
          byType.set(imageType, result.hits);
          if (imageType === query.imageType && result.suggestion) own = labelOfHit(result.suggestion);
        }
        // Both image types ranked together. Adapted: by the service (imageType ALL: the learned type prior
        // where the gallery's cross-validation chose one). Raw: ALL merges by score alone, which is this
        // merge of the full per-type lists; kept client-side so no list is cut at MAX_TOP_K and the raw
        // ranking stays comparable, query by query, with the model used directly.
        let merged: SearchHit[];
        let vote: DefectSuggestion | null;
        const all = await app.search.search({
          image: { base64 },
          imageType: "all",
          topK: Math.min(maxTopK, indexSizes.defect + indexSizes.normal),
          version,
          space,
        });
        run.allIndexMs.push(all.timing.searchMs);
        if (space === "adapted") {
          merged = all.hits;
          vote = all.suggestion;
        } else {
          merged = [...byType.values()].flat().sort((a, b) => b.score - a.score);
          vote = suggestDefectType(merged, 10);
        }
        run.pooled.push(toRanked(query, merged));
        run.ownType.push(toRanked(query, byType.get(query.imageType) ?? []));
        run.suggestions.push({ ownType: own, merged: vote ? labelOfHit(vote) : null });
      }
    }
    const chosen = spaces[app.config.adaptation.defaultSpace];
    const { pooled, ownType, searchMs } = chosen;
    const adaptation = {
      defect: matcher.state("defect").adaptedSpace,
      normal: matcher.state("normal").adaptedSpace,
    };
    await withApp?.(app);
    const { failures, ...counts } = summary;
    return {
      modelId: app.embedder.modelId,
      dimension: app.embedder.dimension,
      ingest: { ...counts, failures: failures.length },
      rebuildMs,
      indexSizes,
      topK,
      pooled,
      ownType,
      searchMs,
      spaces,
      adaptation,
    };
  } finally {
    await app.close();
    await scratch.dispose();
    if (v1Dir) await rm(v1Dir, { recursive: true, force: true });
  }
}

function toRanked(query: RankedQuery["query"], hits: readonly SearchHit[]): RankedQuery {
  const seen = new Set<string>();
  const ranking: string[] = [];
  const scores: number[] = [];
  for (const h of hits) {
    const key = h.contentSha256 ?? `?${h.filePath}`;
    if (seen.has(key)) continue;
    seen.add(key);
    ranking.push(key);
    scores.push(h.score);
  }
  return { query, ranking, scores };
}
