import PQueue from "p-queue";
import pTimeout from "p-timeout";
import type { Logger } from "pino";
import type { ImageRepository } from "../db/images.repository.js";
import type { ImageLimits } from "../embedding/image.decoder.js";
import type { RankQuery } from "../matchers/matcher.js";
import type { ModelRuntime, ModelRuntimes } from "../models/model-runtimes.js";
import { errors } from "../shared/errors.js";
import type { BlobStore } from "../storage/blob-store.js";
import { suggestDefectType } from "./defect-suggestion.js";
import { fetchStage } from "./fetch-stage.js";
import { createHitUrls } from "./hit-urls.js";
import type { MatcherVersionFlag } from "./matcher-version.flag.js";
import { createQueryImages } from "./query-image.js";
import { expandedRanking, groupByDefectType, type QueryExpansion } from "./ranking.js";
import { assertSearchRequest, type SearchRequest } from "./search-request.js";
import type { RankedSearch, SearchObserver, SearchResult, SearchTiming } from "./search-result.js";

// The search's types and ranking steps live in their own modules; re-exported for the callers of this one.
export { expandQuery, groupByDefectType, mergeByType } from "./ranking.js";
export { MAX_PER_GROUP, type QueryImage, type SearchRequest } from "./search-request.js";
export type {
  HitGroup,
  RankedSearch,
  SearchHit,
  SearchObserver,
  SearchResult,
  SearchTiming,
} from "./search-result.js";

/**
 * The search use case: admit the request, resolve and embed the query image, rank it with one call of the
 * chosen matcher (again with alpha-QE), vote and group; download URLs are presigned on demand.
 * Requests arrive validated (`src/graphql/search-input.ts`); the service only asserts their invariants.
 */
export function createSearchService({
  models,
  flag,
  repository,
  blobStore,
  imageLimits,
  maxTopK,
  presignExpirySeconds,
  suggestionTopK = 10,
  queryExpansion = { topN: 0, alpha: 3 },
  admission: admissionLimits,
  logger,
}: {
  /** The served models; each search is ranked by the active one, taken once. */
  models: ModelRuntimes;
  flag: MatcherVersionFlag;
  repository: ImageRepository;
  blobStore: BlobStore;
  /** The decoder's limits (the same object the embedders get): base64 and caller objects are sized by it. */
  imageLimits: Pick<ImageLimits, "maxBytes">;
  maxTopK: number;
  presignExpirySeconds: number;
  /** Hits voting for the suggested defect type (SUGGESTION_TOP_K). */
  suggestionTopK?: number;
  /** alpha-QE: hits the query is expanded with (0 = off) and their weight exponent (QUERY_EXPANSION_*). */
  queryExpansion?: QueryExpansion;
  /**
   * Searches running at once, and waiting, before a search is refused with OVERLOADED; and the longest a
   * search may take from arrival to answer (ms) before it fails with SERVICE_UNAVAILABLE.
   */
  admission: { concurrency: number; queueLimit: number; deadlineMs: number };
  logger: Logger;
}) {
  let observer: SearchObserver | undefined;
  // Searches beyond the running ones wait here; when the wait list is full they are shed at once, so
  // an overload costs the caller a retry instead of a minute in a queue, and status/admin calls (which
  // do not pass through it) never wait behind searches.
  const admission = new PQueue({ concurrency: admissionLimits.concurrency });
  const queryImages = createQueryImages({ repository, blobStore, limits: imageLimits, logger });

  return {
    ...createHitUrls({ blobStore, presignExpirySeconds }),

    /**
     * Finds the gallery images most similar to the query image.
     * Runs at most `admission.concurrency` searches at once; up to `admission.queueLimit` more wait.
     * @throws DomainError OVERLOADED at once when the wait list is full (retryable), BAD_USER_INPUT (at
     *   once, before admission), NOT_FOUND, IMAGE_TOO_LARGE, INVALID_IMAGE_FORMAT,
     *   FEATURE_EXTRACTION_FAILED, INDEX_NOT_READY, SERVICE_UNAVAILABLE (past REQUEST_DEADLINE_MS).
     */
    async search(req: SearchRequest): Promise<SearchResult> {
      assertSearchRequest(req, maxTopK);
      if (admission.size >= admissionLimits.queueLimit) {
        throw errors.overloaded(
          `The service is busy (${admission.pending} searches running, ${admission.size} waiting); retry in a second.`,
          1,
        );
      }
      const enqueued = performance.now();
      const { deadlineMs } = admissionLimits;
      const late = errors.serviceUnavailable(
        `The search did not finish within ${deadlineMs} ms (REQUEST_DEADLINE_MS); retry shortly.`,
      );
      // The caller gets an answer by the deadline. A search still waiting for its slot by then is never
      // started; one already running finishes unobserved (it holds its slot, so concurrency stays bounded).
      const run = admission.add(async () => {
        if (performance.now() - enqueued >= deadlineMs) throw late;
        const ranked = await rank(models.active(), req, enqueued);
        observer?.(req, ranked);
        return ranked.result;
      }) as Promise<SearchResult>;
      return pTimeout(run, { milliseconds: deadlineMs, message: late });
    },

    /**
     * Ranks `req` with one given model, outside admission and without the observer: what shadow traffic
     * and comparisons use. Same validation and errors as {@link search}.
     */
    rankWith(runtime: ModelRuntime, req: SearchRequest): Promise<RankedSearch> {
      assertSearchRequest(req, maxTopK);
      return rank(runtime, req, performance.now());
    },

    /** Sets the one observer told of every answered search (the shadow traffic). */
    observe(o: SearchObserver | undefined) {
      observer = o;
    },
  };

  /** The query image's embedding (and texture), with the timing of its fetch, decode and inference. */
  async function queryVectors({ embedder }: ModelRuntime, req: SearchRequest, timing: SearchTiming) {
    const t0 = performance.now();
    const source = await queryImages.resolve(req.image, {
      modelId: embedder.modelId,
      // A stored texture is read only when an ALL search may lean by it.
      textureModelId: req.imageType === "all" ? embedder.textureModelId : null,
    });
    timing.fetchMs = performance.now() - t0;
    if (source.kind === "stored") return source;
    // Only an ALL search may lean by the texture descriptor (the type prior).
    const {
      embedding,
      texture,
      timing: t,
    } = await embedder.embedOne(source.bytes, {
      texture: req.imageType === "all",
    });
    timing.decodeMs = t.decodeMs;
    timing.inferenceMs = t.inferenceMs;
    return { embedding, texture, exclude: source.exclude };
  }

  async function rank(runtime: ModelRuntime, req: SearchRequest, start: number): Promise<RankedSearch> {
    const { embedder, matchers } = runtime;
    const version = req.version ?? flag.get();
    const matcher = matchers.get(version);
    if (!matcher) {
      throw errors.indexNotReady(
        `Matcher ${version} has no gallery configured${version === "v1" ? " (set V1_GALLERY_DIR)" : ""}.`,
      );
    }
    // Fail before the costly embedding when an index cannot answer anyway (rank checks again).
    matcher.assertReady(req.imageType);

    const timing: SearchTiming = { fetchMs: 0, decodeMs: 0, inferenceMs: 0, searchMs: 0, totalMs: 0 };
    const { embedding, texture, exclude } = await queryVectors(runtime, req, timing);
    const t0 = performance.now();
    const query: RankQuery = {
      embedding,
      texture,
      imageType: req.imageType,
      // The vote may need more neighbours than the caller wants hits; groups are formed from maxTopK.
      topK: req.groupBy ? maxTopK : Math.max(req.topK, suggestionTopK),
      filter: { minScore: req.minScore, productCodes: req.productCodes, defectCodes: req.defectCodes },
      excludeContentSha256: exclude,
      space: req.space ?? undefined,
    };
    let ranked = await matcher.rank(query);
    if (queryExpansion.topN > 0 && version === "v2") {
      ranked = await expandedRanking({
        first: ranked,
        embedding,
        expansion: queryExpansion,
        stored: (ids) => fetchStage(logger, () => repository.getEmbeddings(ids, embedder.modelId)),
        rankWith: (vector) => matcher.rank({ ...query, vector }),
      });
    }
    const { matches, indexSize, space } = ranked;
    timing.searchMs = performance.now() - t0;
    const suggestion = suggestDefectType(
      matches.map((m) => ({ ...m.entry, score: m.score })),
      suggestionTopK,
    );
    const all = matches.map(({ entry, score, space: s }, i) => ({ ...entry, rank: i + 1, score, space: s }));
    const hits = all.slice(0, req.topK);
    const groups = req.groupBy ? groupByDefectType(all, req.perGroup ?? 3, suggestionTopK) : null;
    timing.totalMs = performance.now() - start;
    logger.debug({ version, imageType: req.imageType, hits: hits.length, timing }, "search");
    return {
      result: {
        version,
        imageType: req.imageType,
        modelId: embedder.modelId,
        indexSize,
        hits,
        space,
        suggestion,
        groups,
        timing,
      },
      ranking: all,
    };
  }
}

/** The search service's type, derived from its factory. */
export type SearchService = ReturnType<typeof createSearchService>;
