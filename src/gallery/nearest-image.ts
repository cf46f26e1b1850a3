import { createRequire } from "node:module";
import type { Matcher } from "../matchers/matcher.js";
import { IMAGE_TYPES } from "../shared/types.js";
import type { BlobStore } from "../storage/blob-store.js";
import { thumbnailKey } from "../thumbnails/thumbnail.js";

// sharp-phash is CommonJS (`module.exports = fn`) while its typings declare an ES default export.
const require = createRequire(import.meta.url);
/** pHash of an image: a 64-character string of 0 and 1. */
const phash = require("sharp-phash") as (image: Buffer) => Promise<string>;
/** Hamming distance of two pHash strings. */
const hammingDistance = require("sharp-phash/distance") as (a: string, b: string) => number;

/** A gallery image found to be a near-duplicate of a new one. */
export interface NearestImage {
  imageId: number;
  /** Cosine similarity of the raw embeddings. */
  similarity: number;
  /** Hamming distance of the perceptual hashes (of 64 bits), when they were compared. */
  hashDistance: number | null;
}

/** How near-duplicates are told (see docs/near-duplicates.md for the calibration). */
export interface NearDuplicateRule {
  /** Embedding cosine similarity at which an image is a near-duplicate on its own (per model preset). */
  similarity: number;
  /**
   * Perceptual-hash (pHash, 64 bits) Hamming distance at which one of the nearest embedding neighbours is a
   * near-duplicate. A resized and recompressed copy keeps its pHash within a few bits (p95 5-9 on the shared
   * datasets) while its embedding moves (p50 0.87-0.94), so the hash catches what the embedding alone cannot.
   */
  maxHashDistance: number;
  /** Embedding neighbours whose hashes are compared. */
  candidates: number;
}

/** The default rule's hash part: Hamming distance <= 6 of 64, over the 5 nearest embedding neighbours. */
export const DEFAULT_HASH_RULE = { maxHashDistance: 6, candidates: 5 } as const;

/**
 * The gallery image a new image duplicates, if any: among its nearest gallery images by raw embedding
 * (both image types, as served by `matcher`), the first whose cosine similarity reaches `rule.similarity`,
 * or whose perceptual hash (pHash, DCT of a 32 x 32 greyscale, `sharp-phash`) is within
 * `rule.maxHashDistance` bits of the new image's. A neighbour's hash is taken from its thumbnail (the
 * hash is computed at 32 x 32, so a 256-pixel thumbnail gives the original's hash to a bit or two), or
 * from its original when it has no thumbnail yet.
 * @param bytes - the new image's file bytes.
 * @param embedding - its L2-normalised raw embedding.
 * @returns null when no index is served, the gallery is empty, or nothing is that close.
 */
export async function findNearDuplicate(
  matcher: Matcher,
  blobStore: BlobStore,
  bytes: Buffer,
  embedding: Float32Array,
  rule: NearDuplicateRule,
): Promise<NearestImage | null> {
  const neighbours: {
    imageId: number;
    similarity: number;
    sha256: string | null;
    storageUrl: string | null;
  }[] = [];
  for (const imageType of IMAGE_TYPES) {
    if (!matcher.state(imageType).ready) continue;
    try {
      const { matches } = await matcher.search(imageType, embedding, { topK: rule.candidates, space: "raw" });
      for (const m of matches)
        if (m.entry.imageId !== null)
          neighbours.push({
            imageId: m.entry.imageId,
            similarity: m.score,
            sha256: m.entry.contentSha256,
            storageUrl: m.entry.storageUrl,
          });
    } catch {
      // Reloading or another dimension: no check against this index.
    }
  }
  neighbours.sort((a, b) => b.similarity - a.similarity);
  const nearest = neighbours.slice(0, rule.candidates);
  const top = nearest[0];
  if (!top) return null;
  if (top.similarity >= rule.similarity)
    return { imageId: top.imageId, similarity: top.similarity, hashDistance: null };
  let own: string;
  try {
    own = await phash(bytes);
  } catch {
    return null;
  }
  for (const n of nearest) {
    // The thumbnail (smaller to fetch and hash), or the original when it has none: images of a run without
    // thumbnails, whose thumbnails the backfill makes later.
    const keys = [
      n.sha256 ? thumbnailKey(n.sha256) : undefined,
      n.storageUrl ? blobStore.keyFromStorageUrl(n.storageUrl) : undefined,
    ].filter((k): k is string => k !== undefined);
    let other: Buffer | undefined;
    for (const key of keys) {
      other = await blobStore.get(key).catch(() => undefined);
      if (other) break;
    }
    if (!other) continue;
    const theirs = await phash(other).catch(() => undefined);
    if (theirs === undefined) continue;
    const d = hammingDistance(own, theirs);
    if (d <= rule.maxHashDistance) return { imageId: n.imageId, similarity: n.similarity, hashDistance: d };
  }
  return null;
}
