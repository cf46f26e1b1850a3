import type { Matcher } from "../matchers/matcher.js";
import { IMAGE_TYPES } from "../shared/types.js";

/** The gallery image most like a new one, and how alike (raw embeddings' cosine similarity). */
export interface NearestImage {
  imageId: number;
  similarity: number;
}

/**
 * The most similar gallery image to `embedding` over both image types, in the raw space (a near-duplicate
 * is the same picture, whatever its label), among the indexes `matcher` serves; null when none is served
 * or the gallery is empty. An index that cannot answer is skipped.
 * @param embedding - L2-normalised raw embedding of the model the matcher serves.
 */
export async function nearestGalleryImage(
  matcher: Matcher,
  embedding: Float32Array,
): Promise<NearestImage | null> {
  let best: NearestImage | null = null;
  for (const imageType of IMAGE_TYPES) {
    if (!matcher.state(imageType).ready) continue;
    try {
      const { matches } = await matcher.search(imageType, embedding, { topK: 1, space: "raw" });
      const top = matches[0];
      if (top && top.entry.imageId !== null && (!best || top.score > best.similarity))
        best = { imageId: top.entry.imageId, similarity: top.score };
    } catch {
      // Reloading or another dimension: no check against this index.
    }
  }
  return best;
}
