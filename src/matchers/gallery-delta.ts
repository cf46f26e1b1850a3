import { adaptVector, type Projection } from "../adapted/projection.js";
import { type GalleryColumns, NORMAL_DEFECT_CODE, type SearchFilter } from "../index/gallery-columns.js";
import type { GalleryEntry } from "../index/gallery-entry.js";
import type { ImageType } from "../shared/types.js";
import type { GalleryChange } from "./gallery-source.js";

/** One image added to a served index since its build, held beside it until the next rebuild. */
interface AddedImage {
  entry: GalleryEntry;
  /** L2-normalised raw embedding. */
  raw: Float32Array;
  /** The same in the adapted space, when the index serves one. */
  adapted: Float32Array | null;
}

/** What a search of the delta may keep. */
export interface DeltaFilter extends SearchFilter {
  excludeContentSha256?: string | undefined;
}

/**
 * The changes a served index has taken since its build, without a rebuild: the labels of images removed
 * or relabelled (tombstones, left out at search time) and the images added or relabelled into this image
 * type (searched exactly, beside the index). Rebuilt from the change log whenever an index is swapped in,
 * and emptied by the next rebuild (compaction), whose watermark covers them.
 */
export interface GalleryDelta {
  /** Labels of the base index not to return. */
  readonly removedLabels: ReadonlySet<number>;
  /** Images served from the delta. */
  readonly addedCount: number;
  /**
   * Applies the current state of changed images: an image that is in the base index is tombstoned there;
   * if it still exists, belongs to this image type and has an embedding, it is served from the delta with
   * its labels now.
   */
  apply(changes: readonly GalleryChange[]): void;
  /**
   * Exact top-`k` of the delta by inner product (cosine similarity of L2-normalised vectors).
   * @param query - raw or adapted query vector, matching `space`.
   */
  search(
    query: Float32Array,
    space: "raw" | "adapted",
    k: number,
    filter: DeltaFilter,
  ): { entry: GalleryEntry; score: number }[];
}

/** Label of `imageId` in `columns`, or -1: binary search when ids ascend (V2 builds list by id). */
function labelFinder(columns: GalleryColumns): (imageId: number) => number {
  const ids = columns.imageId;
  let ascending = true;
  for (let i = 1; i < ids.length && ascending; i++) ascending = (ids[i] as number) > (ids[i - 1] as number);
  if (!ascending) {
    const map = new Map<number, number>();
    ids.forEach((id, label) => {
      if (id >= 0) map.set(id, label);
    });
    return (id) => map.get(id) ?? -1;
  }
  return (id) => {
    let lo = 0;
    let hi = ids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = ids[mid] as number;
      if (v === id) return mid;
      if (v < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  };
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/**
 * An empty delta over a served index.
 * @param columns - the base index's metadata (label order).
 * @param projection - the adapted space's projection, when the index serves one.
 */
export function createGalleryDelta({
  imageType,
  columns,
  dimension,
  projection,
}: {
  imageType: ImageType;
  columns: GalleryColumns;
  /** Length of raw embeddings. */
  dimension: number;
  projection: Projection | null;
}): GalleryDelta {
  const labelOf = labelFinder(columns);
  const removedLabels = new Set<number>();
  const added = new Map<number, AddedImage>();

  return {
    removedLabels,
    get addedCount() {
      return added.size;
    },

    apply(changes) {
      for (const { imageId, current } of changes) {
        const label = labelOf(imageId);
        if (label >= 0) removedLabels.add(label);
        added.delete(imageId);
        if (!current || current.entry.imageType !== imageType || current.embedding.length !== dimension)
          continue;
        added.set(imageId, {
          entry: current.entry,
          raw: current.embedding,
          adapted: projection ? adaptVector(projection, current.embedding) : null,
        });
      }
    },

    search(query, space, k, filter) {
      if (added.size === 0) return [];
      const out: { entry: GalleryEntry; score: number }[] = [];
      for (const { entry, raw, adapted } of added.values()) {
        if (filter.productCodes?.length && !filter.productCodes.includes(entry.productCode)) continue;
        if (
          filter.defectCodes?.length &&
          !filter.defectCodes.includes(entry.defectCode ?? NORMAL_DEFECT_CODE)
        )
          continue;
        if (filter.excludeContentSha256 !== undefined && entry.contentSha256 === filter.excludeContentSha256)
          continue;
        const vector = space === "adapted" && adapted ? adapted : raw;
        if (vector.length !== query.length) continue;
        const score = dot(query, vector);
        if (filter.minScore !== undefined && score < filter.minScore) continue;
        out.push({ entry, score });
      }
      out.sort((a, b) => b.score - a.score);
      return out.slice(0, k);
    },
  };
}
