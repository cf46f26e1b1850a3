import PQueue from "p-queue";
import pTimeout from "p-timeout";
import type { Logger } from "pino";
import { type TypePrior, typeLean, typeShift } from "../adapted/type-prior.js";
import type { ImageRepository } from "../db/images.repository.js";
import { l2NormalizeInPlace } from "../embedding/embedding.model.js";
import type { GalleryEntry } from "../index/gallery-entry.js";
import type { EmbeddingSpace, Match } from "../matchers/matcher.js";
import type { ModelRuntime, ModelRuntimes } from "../models/model-runtimes.js";
import { errors, isDomainError } from "../shared/errors.js";
import { IMAGE_TYPES, type ImageType, type MatcherVersion } from "../shared/types.js";
import type { BlobStore } from "../storage/blob-store.js";
import { isCallerReadableKey } from "../storage/original-key.js";
import { thumbnailKey } from "../thumbnails/thumbnail.js";
import { classKey, type DefectSuggestion, suggestDefectType, voteShares } from "./defect-suggestion.js";
import type { MatcherVersionFlag } from "./matcher-version.flag.js";

/** Where the query image comes from; exactly one field is set. */
export interface QueryImage {
  /** The image file's bytes (a multipart upload). */
  bytes?: Buffer | null;
  /** The image bytes, base64 (a `data:image/...;base64,` prefix is accepted). */
  base64?: string | null;
  /** Key of an object already in the service's bucket. */
  storageKey?: string | null;
  /** Id of a gallery image ("find similar"); the image itself is left out of the results. */
  galleryImageId?: number | null;
}

/** A validated search request. */
export interface SearchRequest {
  image: QueryImage;
  /**
   * The gallery to search: `defect`, `normal`, or `all` (both, merged into one ranking; in the adapted
   * space with the learned type prior, when one is served).
   */
  imageType: ImageType | "all";
  topK: number;
  minScore?: number | null;
  productCodes?: readonly string[] | null;
  defectCodes?: readonly string[] | null;
  /** Overrides the active matcher for this request. */
  version?: MatcherVersion | null;
  /**
   * Space to rank in: `adapted` ("what defect is this?", learned from the gallery's labels) or `raw`
   * ("visually similar"); default SEARCH_DEFAULT_SPACE. `adapted` falls back to raw where none is served.
   */
  space?: EmbeddingSpace | null;
  /**
   * `defectType`: also answer the hits grouped by (product, defect type), so an inspector sees the
   * alternatives when the top of the ranking is all one type. Groups are formed from the best `maxTopK`
   * hits (the same filters apply).
   */
  groupBy?: "defectType" | null;
  /** Hits per group, 1 to 10 (default 3). */
  perGroup?: number | null;
}

/** Hits of one (product, defect type), as `groupBy: defectType` answers them. */
export interface HitGroup {
  productCode: string;
  /** Null for normal images. */
  defectCode: string | null;
  defectName: string | null;
  /** The class's share of the suggestion's vote (0 when none of the voting hits has it). */
  share: number;
  /** Its best `perGroup` hits, with their ranks in the whole ranking. */
  hits: SearchHit[];
}

/** One ranked result with everything the gallery knows about the image. */
export interface SearchHit extends GalleryEntry {
  /** 1-based. */
  rank: number;
  /** Cosine similarity of the query and gallery embeddings, in [-1, 1]. */
  score: number;
  /** The space that ranked this hit. */
  space: EmbeddingSpace;
}

/** Time spent per stage of one search (ms). */
export interface SearchTiming {
  fetchMs: number;
  decodeMs: number;
  inferenceMs: number;
  searchMs: number;
  totalMs: number;
}

/** The answer to one search. */
export interface SearchResult {
  version: MatcherVersion;
  imageType: ImageType | "all";
  /** The embedding model that ranked it (the query's embedding and every index searched are of it). */
  modelId: string;
  indexSize: number;
  hits: SearchHit[];
  /** The space the hits were ranked in. */
  space: EmbeddingSpace;
  /** Likely defect type by a weighted vote of the top SUGGESTION_TOP_K hits (filters apply); null without hits. */
  suggestion: DefectSuggestion | null;
  /** With `groupBy`: the hits by (product, defect type), the largest vote share first; else null. */
  groups: HitGroup[] | null;
  timing: SearchTiming;
}

/** A search's answer with its whole ranking (at least the suggestion's voters), for shadow traffic. */
export interface RankedSearch {
  result: SearchResult;
  /** The ranking the hits were cut from: at least max(topK, SUGGESTION_TOP_K) hits when there are as many. */
  ranking: SearchHit[];
}

/** Told of every answered search (shadow traffic); must return at once. */
export type SearchObserver = (req: SearchRequest, answered: RankedSearch) => void;

/** Largest `perGroup`. */
export const MAX_PER_GROUP = 10;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * The search use case: resolve the query image, embed it, search the chosen matcher, attach download URLs.
 */
export function createSearchService({
  models,
  flag,
  repository,
  blobStore,
  maxImageBytes,
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
  maxImageBytes: number;
  maxTopK: number;
  presignExpirySeconds: number;
  /** Hits voting for the suggested defect type (SUGGESTION_TOP_K). */
  suggestionTopK?: number;
  /** alpha-QE: hits the query is expanded with (0 = off) and their weight exponent (QUERY_EXPANSION_*). */
  queryExpansion?: { topN: number; alpha: number };
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

  function decodeBase64(input: string): Buffer {
    const body = input.replace(/^data:[^;,]*;base64,/, "").replace(/\s+/g, "");
    // Checked before decoding, so a huge payload costs no allocation.
    const approxBytes = Math.floor((body.length * 3) / 4);
    if (approxBytes > maxImageBytes) {
      throw errors.imageTooLarge(
        `The image is about ${approxBytes} bytes; the limit is ${maxImageBytes} bytes. Send a smaller or more compressed image.`,
        { sizeBytes: approxBytes, maxBytes: maxImageBytes },
      );
    }
    if (body.length % 4 !== 0 || !BASE64.test(body)) {
      throw errors.badInput(
        "image.base64 is not valid base64; encode the image file's bytes with standard base64.",
      );
    }
    return Buffer.from(body, "base64");
  }

  /**
   * An original named by a caller: only keys of the service's own layout are read, and every refusal
   * (bad key, no such object, too large) is the same NOT_FOUND, so the answer tells nothing about what
   * else the bucket holds.
   */
  async function fetchCallerObject(key: string): Promise<Buffer> {
    const refused = () =>
      errors.notFound(
        "No readable image has that storageKey. Keys are images/<2 hex>/<sha256>.<ext> (originals, as ingestion stores them) or queries/<name>.",
      );
    if (!isCallerReadableKey(key)) throw refused();
    const size = await blobStore.size(key);
    if (size === undefined || size > maxImageBytes) throw refused();
    const bytes = await blobStore.get(key);
    if (!bytes) throw refused();
    return bytes;
  }

  async function fetchStorageObject(key: string): Promise<Buffer> {
    const size = await blobStore.size(key);
    if (size === undefined)
      throw errors.notFound(`No object '${key}' in bucket '${blobStore.bucket}'.`, { storageKey: key });
    if (size > maxImageBytes) {
      throw errors.imageTooLarge(`Object '${key}' is ${size} bytes; the limit is ${maxImageBytes} bytes.`, {
        sizeBytes: size,
        maxBytes: maxImageBytes,
      });
    }
    const bytes = await blobStore.get(key);
    if (!bytes)
      throw errors.notFound(`No object '${key}' in bucket '${blobStore.bucket}'.`, { storageKey: key });
    return bytes;
  }

  /** Object key of an entry's original, when it is in the service's bucket. */
  const originalKeyOf = (entry: GalleryEntry) =>
    entry.storageUrl ? blobStore.keyFromStorageUrl(entry.storageUrl) : undefined;

  /**
   * Runs the fetch stage (PostgreSQL, object storage): an outage or a timeout there is SERVICE_UNAVAILABLE,
   * which a client may retry, rather than an internal error.
   */
  async function fetching<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (e) {
      if (isDomainError(e)) throw e;
      logger.warn({ err: e }, "query image fetch failed");
      throw errors.serviceUnavailable(
        "The database or object storage did not answer in time; retry shortly, or send the image as base64.",
        e,
      );
    }
  }

  /** The query embedding and the content hash to leave out of the results, if any. */
  async function queryEmbedding(
    { embedder }: ModelRuntime,
    image: QueryImage,
    timing: SearchTiming,
    wantTexture: boolean,
  ) {
    const given = [image.bytes, image.base64, image.storageKey, image.galleryImageId].filter(
      (v) => v !== undefined && v !== null,
    );
    if (given.length !== 1) {
      throw errors.badInput(
        "Give exactly one of image.file, image.base64, image.storageKey or image.galleryImageId.",
      );
    }
    let bytes: Buffer;
    let exclude: string | undefined;
    const t0 = performance.now();
    if (image.galleryImageId !== undefined && image.galleryImageId !== null) {
      const id = image.galleryImageId;
      const row = await fetching(() => repository.getGalleryImage(id));
      if (!row) throw errors.notFound(`No gallery image with id ${id}.`, { galleryImageId: id });
      exclude = row.contentSha256;
      const stored = await fetching(() => repository.getEmbedding(id, embedder.modelId));
      if (stored) {
        // Its texture too when an ALL search may lean by it (ingestion and rebuilds store it); without
        // one, the search merges by similarity rather than re-embedding the original.
        const textureId = wantTexture ? embedder.textureModelId : null;
        const texture = textureId ? await fetching(() => repository.getEmbedding(id, textureId)) : undefined;
        timing.fetchMs = performance.now() - t0;
        return { embedding: stored, texture: texture ?? null, exclude };
      }
      const key = row.storageUrl ? blobStore.keyFromStorageUrl(row.storageUrl) : undefined;
      if (!key) throw errors.notFound(`Gallery image ${id} has no original in object storage to embed.`);
      bytes = await fetching(() => fetchStorageObject(key));
    } else if (image.storageKey !== undefined && image.storageKey !== null) {
      const storageKey = image.storageKey;
      bytes = await fetching(() => fetchCallerObject(storageKey));
    } else if (image.bytes !== undefined && image.bytes !== null) {
      bytes = image.bytes;
      if (bytes.length > maxImageBytes)
        throw errors.imageTooLarge(
          `The image is ${bytes.length} bytes; the limit is ${maxImageBytes} bytes. Send a smaller or more compressed image.`,
          { sizeBytes: bytes.length, maxBytes: maxImageBytes },
        );
    } else {
      bytes = decodeBase64(image.base64 ?? "");
    }
    timing.fetchMs = performance.now() - t0;
    const { embedding, texture, timing: t } = await embedder.embedOne(bytes);
    timing.decodeMs = t.decodeMs;
    timing.inferenceMs = t.inferenceMs;
    return { embedding, texture, exclude };
  }

  return {
    /**
     * Finds the gallery images most similar to the query image.
     * Runs at most `admission.concurrency` searches at once; up to `admission.queueLimit` more wait.
     * @throws DomainError OVERLOADED at once when the wait list is full (retryable), BAD_USER_INPUT,
     *   NOT_FOUND, IMAGE_TOO_LARGE, INVALID_IMAGE_FORMAT, FEATURE_EXTRACTION_FAILED, INDEX_NOT_READY.
     */
    /** Presigned GET URL of a hit's original, when it is in object storage; null otherwise (V1). */
    downloadUrl(entry: GalleryEntry): Promise<string | null> {
      const key = originalKeyOf(entry);
      return key ? blobStore.presignedGetUrl(key, presignExpirySeconds) : Promise.resolve(null);
    },

    /**
     * Presigned GET URL of a hit's thumbnail, when its original is in object storage; null otherwise (V1).
     * Thumbnails are content-addressed like originals, so no lookup is needed to name one.
     */
    thumbnailUrl(entry: GalleryEntry): Promise<string | null> {
      return originalKeyOf(entry) && entry.contentSha256
        ? blobStore.presignedGetUrl(thumbnailKey(entry.contentSha256), presignExpirySeconds)
        : Promise.resolve(null);
    },

    async search(req: SearchRequest): Promise<SearchResult> {
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
      return rank(runtime, req, performance.now());
    },

    /** Sets the one observer told of every answered search (the shadow traffic). */
    observe(o: SearchObserver | undefined) {
      observer = o;
    },
  };

  async function rank(runtime: ModelRuntime, req: SearchRequest, start: number): Promise<RankedSearch> {
    const { embedder, matchers } = runtime;
    if (!Number.isInteger(req.topK) || req.topK < 1 || req.topK > maxTopK) {
      throw errors.badInput(`topK must be an integer from 1 to ${maxTopK}; got ${req.topK}.`);
    }
    if (req.minScore !== undefined && req.minScore !== null && !(req.minScore >= -1 && req.minScore <= 1)) {
      throw errors.badInput(`minScore is a cosine similarity, from -1 to 1; got ${req.minScore}.`);
    }
    const perGroup = req.perGroup ?? 3;
    if (req.groupBy && !(Number.isInteger(perGroup) && perGroup >= 1 && perGroup <= MAX_PER_GROUP)) {
      throw errors.badInput(`perGroup must be an integer from 1 to ${MAX_PER_GROUP}; got ${perGroup}.`);
    }
    const version = req.version ?? flag.get();
    const matcher = matchers.get(version);
    if (!matcher) {
      throw errors.indexNotReady(
        `Matcher ${version} has no gallery configured${version === "v1" ? " (set V1_GALLERY_DIR)" : ""}.`,
      );
    }
    const types = req.imageType === "all" ? IMAGE_TYPES : [req.imageType];
    // Fail before the costly embedding when an index cannot answer anyway.
    for (const t of types) matcher.assertReady(t);

    const timing: SearchTiming = { fetchMs: 0, decodeMs: 0, inferenceMs: 0, searchMs: 0, totalMs: 0 };
    const { embedding, texture, exclude } = await queryEmbedding(
      runtime,
      req.image,
      timing,
      req.imageType === "all",
    );
    const t0 = performance.now();
    const options = {
      // The vote may need more neighbours than the caller wants hits; groups are formed from maxTopK.
      topK: req.groupBy ? maxTopK : Math.max(req.topK, suggestionTopK),
      space: req.space ?? undefined,
      minScore: req.minScore ?? undefined,
      productCodes: req.productCodes ?? undefined,
      defectCodes: req.defectCodes ?? undefined,
      excludeContentSha256: exclude,
    };
    const prior = req.imageType === "all" ? matcher.typePrior(options.space) : null;
    const searchWith = async (q: Float32Array) =>
      mergeByType(
        await Promise.all(
          types
            .filter((t) => types.length === 1 || matcher.state(t).count > 0)
            .map(async (t) => ({ imageType: t, ...(await matcher.search(t, q, options)) })),
        ),
        prior,
        // The type prior leans by the query image itself, expanded or not.
        { embedding, texture },
        options.topK,
      );
    let ranked = await searchWith(embedding);
    if (queryExpansion.topN > 0 && version === "v2") {
      // alpha-QE: the top hits' stored embeddings pull the query towards their neighbourhood.
      const top = ranked.matches.slice(0, queryExpansion.topN);
      const ids = top.flatMap((m) => (m.entry.imageId === null ? [] : [m.entry.imageId]));
      const stored = await fetching(() => repository.getEmbeddings(ids, embedder.modelId));
      const neighbours = top.flatMap((m) => {
        const v = m.entry.imageId === null ? undefined : stored.get(m.entry.imageId);
        return v ? [{ vector: v, score: m.score }] : [];
      });
      if (neighbours.length > 0)
        ranked = await searchWith(expandQuery(embedding, neighbours, queryExpansion.alpha));
    }
    const { matches, indexSize, space } = ranked;
    timing.searchMs = performance.now() - t0;
    const suggestion = suggestDefectType(
      matches.map((m) => ({ ...m.entry, score: m.score })),
      suggestionTopK,
    );
    // Download and thumbnail URLs are presigned only when a client asks for them (downloadUrl, thumbnailUrl).
    const all = matches.map(({ entry, score, space: s }, i) => ({ ...entry, rank: i + 1, score, space: s }));
    const hits = all.slice(0, req.topK);
    const groups = req.groupBy ? groupByDefectType(all, perGroup, suggestionTopK) : null;
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

/**
 * Hits grouped by (product, defect type), as Qdrant's `query_points_groups` groups points: each group holds
 * its best `perGroup` hits in rank order; groups are ordered by their share of the suggestion's vote
 * ({@link voteShares} over the first `voteTopK` hits), then by their best hit's rank.
 */
export function groupByDefectType(
  ranked: readonly SearchHit[],
  perGroup: number,
  voteTopK: number,
): HitGroup[] {
  const shares = voteShares(ranked, voteTopK);
  const groups = new Map<string, HitGroup & { best: number }>();
  for (const hit of ranked) {
    const key = classKey(hit);
    let g = groups.get(key);
    if (!g) {
      g = {
        productCode: hit.productCode,
        defectCode: hit.defectCode,
        defectName: hit.defectName,
        share: shares.get(key) ?? 0,
        hits: [],
        best: hit.rank,
      };
      groups.set(key, g);
    }
    if (g.hits.length < perGroup) g.hits.push(hit);
  }
  return [...groups.values()]
    .sort((a, b) => b.share - a.share || a.best - b.best)
    .map(({ best: _best, ...g }) => g);
}

/**
 * alpha-QE (Radenović, Tolias & Chum, "Fine-tuning CNN image retrieval with no human annotation", TPAMI
 * 2018, §3.4): `normalise(q + sum_i max(s_i, 0)^alpha x_i)` over the query's top hits.
 * @param query - L2-normalised embedding.
 * @param neighbours - the top hits' L2-normalised embeddings (same length as `query`) and similarities.
 * @returns a new L2-normalised `Float32Array`; the query itself when every weight is zero.
 */
export function expandQuery(
  query: Float32Array,
  neighbours: readonly { vector: Float32Array; score: number }[],
  alpha: number,
): Float32Array {
  const out = Float32Array.from(query);
  for (const { vector, score } of neighbours) {
    const w = Math.max(score, 0) ** alpha;
    for (let d = 0; d < out.length; d++) out[d] = (out[d] as number) + w * (vector[d] as number);
  }
  return l2NormalizeInPlace(out) ? out : Float32Array.from(query);
}

/**
 * One ranking from the searches of one or both image types. With a type prior, each hit is ranked by its
 * similarity shifted by `typeShift` (towards the type the query leans to); the reported score stays the
 * similarity. Without one, hits are merged by similarity.
 */
export function mergeByType(
  searched: readonly {
    imageType: ImageType;
    matches: Match[];
    indexSize: number;
    space: EmbeddingSpace;
  }[],
  prior: TypePrior | null,
  query: { embedding: Float32Array; texture: Float32Array | null },
  topK: number,
): { matches: (Match & { space: EmbeddingSpace })[]; indexSize: number; space: EmbeddingSpace } {
  const first = searched[0];
  if (searched.length === 1 && first) {
    return {
      matches: first.matches.map((m) => ({ ...m, space: first.space })),
      indexSize: first.indexSize,
      space: first.space,
    };
  }
  // The prior was learned on the adapted defect scores: it applies only where those were searched.
  const applies = prior !== null && searched.some((s) => s.imageType === "defect" && s.space === "adapted");
  const descriptor = prior?.descriptor === "texture" ? query.texture : query.embedding;
  const lean = applies && prior && descriptor?.length === prior.inDim ? typeLean(prior, descriptor) : 0;
  const ranked = searched.flatMap((s) =>
    s.matches.map((m) => ({
      ...m,
      space: s.space,
      rankScore: m.score + (applies && prior ? typeShift(prior, lean, s.imageType === "defect") : 0),
    })),
  );
  ranked.sort((a, b) => b.rankScore - a.rankScore);
  return {
    matches: ranked.slice(0, topK).map(({ rankScore: _r, ...m }) => m),
    indexSize: searched.reduce((n, s) => n + s.indexSize, 0),
    space: searched.some((s) => s.space === "adapted") ? "adapted" : "raw",
  };
}

/** The search service's type, derived from its factory. */
export type SearchService = ReturnType<typeof createSearchService>;
