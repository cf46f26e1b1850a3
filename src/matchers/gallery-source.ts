import { setImmediate } from "node:timers/promises";
import type { GalleryEntry } from "../index/gallery-entry.js";
import type { ImageType, MatcherVersion } from "../shared/types.js";

/** Progress of collecting a gallery's embeddings. */
export interface GalleryProgress {
  /** Gallery images found. */
  total: number;
  /** Images handled so far (embedding reused, computed or failed). */
  processed: number;
  /** Embeddings computed during this collection (the rest were reused). */
  newlyEmbedded: number;
  /** Images skipped because they could not be read or embedded. */
  failed: number;
}

/** A gallery ready to index: `entries[i]` describes row i of `vectors`. */
export interface CollectedGallery {
  entries: GalleryEntry[];
  /** `entries.length` x dimension float32 values, row-major, rows L2-normalised. */
  vectors: Float32Array;
  /** Images left out, with the reason a person can act on. */
  failures: { item: string; reason: string }[];
}

/** Where a matcher's gallery comes from: V1 a folder of named files, V2 the database. */
export interface GallerySource {
  readonly version: MatcherVersion;
  /** Human-readable origin, for status and logs. */
  readonly description: string;
  /**
   * Gathers every gallery image of `imageType` with its embedding, computing missing ones.
   * @throws when the source itself is unreachable (folder missing, database down).
   */
  collect(imageType: ImageType, onProgress: (p: GalleryProgress) => void): Promise<CollectedGallery>;
  /** Key of the texture descriptors {@link collectTextures} gives (they change when it does). */
  textureModelId?: string | null | undefined;
  /**
   * As {@link collect}, with each image's texture descriptor (`src/embedding/texture.ts`) as its vector,
   * for the images `keep` accepts only (default all): a training sample needs no more in memory. Absent
   * when the source or the model has none.
   */
  collectTextures?:
    | ((
        imageType: ImageType,
        onProgress: (p: GalleryProgress) => void,
        keep?: (imageId: number) => boolean,
      ) => Promise<CollectedGallery>)
    | undefined;
  /**
   * A cheap summary of the gallery's content (e.g. count and newest id) that changes when images are
   * added or removed; a persisted index built from another fingerprint is stale.
   */
  fingerprint(imageType: ImageType): Promise<string>;
  /**
   * The gallery's change log, where the source has one (V2: `gallery_changes`): a build records the
   * {@link GalleryChangeFeed.watermark} it read before collecting, and a served index replays what came
   * after, so added, relabelled and removed images are searchable without a rebuild.
   */
  changes?: GalleryChangeFeed | undefined;
}

/** One image the change log touched, as it is now: its entry and embedding, or null once removed. */
export interface GalleryChange {
  imageId: number;
  current: { entry: GalleryEntry; embedding: Float32Array } | null;
}

/** A gallery's change log, read in commit order. */
export interface GalleryChangeFeed {
  /** The newest change's sequence number (0 when none). */
  watermark(): Promise<number>;
  /**
   * Images changed after `seq`, with their state now (an image without an embedding of the model yet is
   * given as removed until a rebuild embeds it).
   * @throws when the database is unreachable.
   */
  since(seq: number): Promise<{ watermark: number; changed: GalleryChange[] }>;
}

/** Packs vectors into one row-major `Float32Array`. */
export function packVectors(vectors: readonly Float32Array[], dimension: number): Float32Array {
  const out = new Float32Array(vectors.length * dimension);
  vectors.forEach((v, i) => {
    out.set(v, i * dimension);
  });
  return out;
}

/** Rows {@link packVectorsYielding} copies between two turns of the event loop (5 MB of 1280-d vectors). */
const PACK_ROWS_PER_TURN = 1024;

/**
 * {@link packVectors} for a whole gallery, handing the event loop back after every 1,024 rows: the first
 * write to each page of a large fresh array page-faults (about 1 ms per MB on a small VM), so packing 10k
 * 1280-d embeddings (51 MB) at once held the main thread, and the searches waiting on it, for about 200 ms.
 * @param vectors - each of length `dimension`.
 * @returns `Float32Array` of `vectors.length * dimension`, row-major, its buffer exactly that size.
 */
export async function packVectorsYielding(
  vectors: readonly Float32Array[],
  dimension: number,
): Promise<Float32Array> {
  const out = new Float32Array(vectors.length * dimension);
  for (let i = 0; i < vectors.length; i++) {
    if (i > 0 && i % PACK_ROWS_PER_TURN === 0) await setImmediate();
    out.set(vectors[i] as Float32Array, i * dimension);
  }
  return out;
}
