import PQueue from "p-queue";
import type { Logger } from "pino";
import type { ShadowComparisonRow } from "../db/model-registry.repository.js";
import { classKey } from "../search/defect-suggestion.js";
import type { RankedSearch, SearchHit, SearchRequest } from "../search/search.service.js";
import type { ModelRuntime } from "./model-runtimes.js";

/** Hits compared by overlap@K. */
export const SHADOW_K = 10;

/** Shadow searches waiting beyond this many are dropped: shadow traffic never builds a backlog. */
const MAX_WAITING = 4;

/** A gallery image's identity across two models' rankings. */
const hitKey = (h: SearchHit) =>
  h.imageId !== null ? `id:${h.imageId}` : `file:${h.filePath ?? h.contentSha256 ?? h.rank}`;

/**
 * What two rankings of one query share: overlap@10 (|top-10 ∩ top-10| / 10), whether the rank-1 hits have
 * the same (product, defect type), and whether both suggestions agree (null when either has none).
 */
export function compareRankings(
  active: RankedSearch,
  candidate: RankedSearch,
): Pick<ShadowComparisonRow, "overlapAt10" | "top1Agrees" | "suggestionAgrees"> {
  const a = active.ranking.slice(0, SHADOW_K).map(hitKey);
  const c = new Set(candidate.ranking.slice(0, SHADOW_K).map(hitKey));
  const shared = a.filter((k) => c.has(k)).length;
  const [a1] = active.ranking;
  const [c1] = candidate.ranking;
  const sa = active.result.suggestion;
  const sc = candidate.result.suggestion;
  return {
    overlapAt10: shared / SHADOW_K,
    top1Agrees: a1 !== undefined && c1 !== undefined && classKey(a1) === classKey(c1),
    suggestionAgrees: sa && sc ? classKey(sa) === classKey(sc) : null,
  };
}

/**
 * Shadow traffic: a share of the answered searches is ranked again by the candidate model, one at a time,
 * after the answer has gone (the caller never waits for it), and the comparison is recorded. A candidate
 * that is not served yet, or a backlog of {@link MAX_WAITING}, skips the query.
 */
export function createShadowTraffic({
  share,
  candidate,
  rankWith,
  record,
  logger,
  random = Math.random,
}: {
  /** MODEL_SHADOW_SHARE: share [0, 1] of searches shadowed. */
  share: number;
  /** The model to shadow with now, or null (none registered, or not served yet). */
  candidate: () => ModelRuntime | null;
  rankWith: (runtime: ModelRuntime, req: SearchRequest) => Promise<RankedSearch>;
  record: (row: ShadowComparisonRow) => Promise<void>;
  logger: Logger;
  random?: () => number;
}) {
  const queue = new PQueue({ concurrency: 1 });
  let closed = false;
  return {
    /** Considers one answered search for shadowing; returns at once. */
    offer(req: SearchRequest, answered: RankedSearch): void {
      if (closed || share <= 0 || random() >= share) return;
      const runtime = candidate();
      if (!runtime || runtime.modelId === answered.result.modelId) return;
      if (queue.size >= MAX_WAITING) return;
      // Ranked like the answer, with at least the ten hits overlap@10 compares (groups are not compared).
      const shadowReq: SearchRequest = {
        ...req,
        topK: Math.max(req.topK, SHADOW_K),
        groupBy: null,
        version: answered.result.version,
      };
      void queue
        .add(async () => {
          const t0 = performance.now();
          const ranked = await rankWith(runtime, shadowReq);
          const candidateMs = performance.now() - t0;
          await record({
            activeModelId: answered.result.modelId,
            candidateModelId: runtime.modelId,
            imageType: req.imageType,
            ...compareRankings(answered, ranked),
            activeMs: answered.result.timing.totalMs,
            candidateMs,
          });
        })
        .catch((err) => logger.debug({ err }, "shadow search failed"));
    },

    /** Resolves when no shadow search is waiting or running (tests, shutdown). */
    idle: () => queue.onIdle(),

    async close(): Promise<void> {
      closed = true;
      queue.clear();
      await queue.onIdle();
    },
  };
}

/** The shadow traffic's type, derived from its factory. */
export type ShadowTraffic = ReturnType<typeof createShadowTraffic>;
