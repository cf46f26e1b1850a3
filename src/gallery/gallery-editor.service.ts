import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { GalleryEditsRepository } from "../db/gallery-edits.repository.js";
import { humanizeCode } from "../ingest/dataset.reader.js";
import { type NearDuplicateCheck, storageKeyFor } from "../ingest/ingest.service.js";
import type { Matcher } from "../matchers/matcher.js";
import type { ModelRuntimes } from "../models/model-runtimes.js";
import { errors, isDomainError } from "../shared/errors.js";
import { NORMAL_DEFECT_CODES } from "../shared/types.js";
import type { BlobStore } from "../storage/blob-store.js";
import { makeThumbnail, THUMBNAIL_CONTENT_TYPE, thumbnailKey } from "../thumbnails/thumbnail.js";
import type { GalleryImageView, GalleryService } from "./gallery.service.js";
import { findNearDuplicate, type NearDuplicateRule, type NearestImage } from "./nearest-image.js";

/** One image to add: its bytes (already read from the upload) and its labels. */
export interface NewGalleryImage {
  /** The file's bytes, or the error reading the upload gave (refused with that error's code). */
  bytes: Buffer | Error;
  productCode: string;
  /** Null or `normal` (also `good`, `ok`): a normal image. */
  defectCode?: string | null | undefined;
  /** Names for labels created by this call; default the code made readable. */
  productName?: string | null | undefined;
  defectName?: string | null | undefined;
}

/** Why one image of a batch was not added; the others are unaffected. */
export interface AddRefusal {
  /** Position in the batch, from 0. */
  index: number;
  /** Stable code: DUPLICATE_IMAGE, NEAR_DUPLICATE, BAD_USER_INPUT, IMAGE_TOO_LARGE, INVALID_IMAGE_FORMAT, ... */
  code: string;
  message: string;
}

/** A new image whose nearest gallery image is at or above the near-duplicate similarity. */
export interface NearDuplicateReport {
  index: number;
  /** The added image, or null when it was refused for it (skipNearDuplicates). */
  imageId: number | null;
  neighbourImageId: number;
  /** Cosine similarity of the raw embeddings. */
  similarity: number;
  /** pHash Hamming distance (of 64 bits) when the hash decided; null when the similarity did. */
  hashDistance: number | null;
}

/** What {@link GalleryEditor.add} did. */
export interface AddOutcome {
  added: GalleryImageView[];
  refused: AddRefusal[];
  nearDuplicates: NearDuplicateReport[];
}

/** A group of gallery images that are near-duplicates of each other (pairs joined transitively). */
export interface NearDuplicateGroup {
  /** Highest similarity of a pair in the group. */
  similarity: number;
  images: GalleryImageView[];
}

/** Product and defect codes: a letter or digit, then letters, digits, `_`, `-`, `.`; at most 64. */
const CODE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const NAME_MAX = 200;

/**
 * Validated labels.
 * @throws DomainError BAD_USER_INPUT naming the field.
 */
function labels(input: {
  productCode: string;
  defectCode?: string | null | undefined;
  productName?: string | null | undefined;
  defectName?: string | null | undefined;
}) {
  const productCode = input.productCode.trim();
  if (!CODE.test(productCode))
    throw errors.badInput(
      `productCode must be 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit; got '${productCode.slice(0, 70)}'.`,
    );
  const rawDefect = input.defectCode?.trim() || null;
  const defectCode =
    rawDefect === null || NORMAL_DEFECT_CODES.has(rawDefect.toLowerCase()) ? null : rawDefect;
  if (defectCode !== null && !CODE.test(defectCode))
    throw errors.badInput(
      `defectCode must be 1 to 64 letters, digits, '_', '-' or '.' (or null / "normal" for a normal image); got '${defectCode.slice(0, 70)}'.`,
    );
  for (const [field, value] of [
    ["productName", input.productName],
    ["defectName", input.defectName],
  ] as const)
    if (value && value.length > NAME_MAX)
      throw errors.badInput(`${field} is longer than ${NAME_MAX} characters.`);
  return {
    productCode,
    productName: input.productName?.trim() || humanizeCode(productCode),
    defectCode,
    defectName: defectCode === null ? null : input.defectName?.trim() || humanizeCode(defectCode),
  };
}

/** Why an image is a near-duplicate, for a person. */
const describeNear = (n: NearestImage, rule: NearDuplicateRule) =>
  n.hashDistance === null
    ? `cosine similarity ${n.similarity.toFixed(4)} >= ${rule.similarity}`
    : `perceptual hash ${n.hashDistance} of 64 bits apart (<= ${rule.maxHashDistance}), cosine similarity ${n.similarity.toFixed(4)}`;

const refusalOf = (index: number, e: unknown): AddRefusal => ({
  index,
  code: isDomainError(e) ? e.code : "SERVICE_UNAVAILABLE",
  message: isDomainError(e)
    ? e.message
    : `The image could not be stored (database or object storage): ${(e as Error).message}. Nothing was added; retry.`,
});

/**
 * Edits of the V2 gallery through the API: add, relabel, remove, and the near-duplicate review. Each edit
 * is one database transaction with its change-log row, applied to this replica's served indexes before
 * the answer (the others follow the log within their NOTIFY or STATE_POLL_MS), so the caller's next
 * search sees it, with no rebuild.
 */
export function createGalleryEditor({
  edits,
  blobStore,
  models,
  applyChanges,
  gallery,
  settings,
  logger,
}: {
  edits: GalleryEditsRepository;
  blobStore: BlobStore;
  /**
   * The served models: the active one embeds and checks for near-duplicates (its V2 indexes); every other
   * served model (a candidate, the previous one) embeds the image too, so a promotion or a rollback finds it.
   */
  models: ModelRuntimes;
  /** Applies the change log to this replica's served indexes (all matchers). */
  applyChanges: () => Promise<void>;
  gallery: GalleryService;
  settings: { maxImages: number; nearDuplicate: NearDuplicateRule };
  logger: Logger;
}) {
  async function view(imageId: number): Promise<GalleryImageView> {
    const [v] = await gallery.images([imageId]);
    if (!v) throw errors.notFound(`No gallery image with id ${imageId}.`, { imageId });
    return v;
  }

  /** Adds one image; throws a DomainError (its refusal) or an infrastructure error. */
  async function addOne(
    item: NewGalleryImage,
    index: number,
    skipNearDuplicates: boolean,
    changedBy: string,
    reports: NearDuplicateReport[],
  ): Promise<GalleryImageView> {
    if (item.bytes instanceof Error) throw item.bytes;
    const bytes = item.bytes;
    const l = labels(item);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const known = await edits.imageIdBySha256(sha256);
    if (known !== undefined)
      throw errors.duplicateImage(
        `These exact bytes are already in the gallery as image ${known}; relabel that image instead.`,
      );
    const runtime = models.active();
    const { embedder } = runtime;
    const matcher = runtime.matchers.get("v2") as Matcher;
    const [outcome] = await embedder.embedMany([bytes]);
    if (!outcome?.ok) throw outcome?.error ?? errors.featureExtractionFailed("The image was not embedded.");
    const near = await findNearDuplicate(
      matcher,
      blobStore,
      bytes,
      outcome.embedding,
      settings.nearDuplicate,
    );
    const isNear = near !== null;
    if (isNear && skipNearDuplicates) {
      reports.push({
        index,
        imageId: null,
        neighbourImageId: near.imageId,
        similarity: near.similarity,
        hashDistance: near.hashDistance,
      });
      throw errors.nearDuplicate(
        `The image is a near-duplicate of gallery image ${near.imageId} (${describeNear(near, settings.nearDuplicate)}); it was not added (skipNearDuplicates).`,
      );
    }
    const { info } = outcome;
    const key = storageKeyFor(sha256, info.contentType);
    // Objects first, content-addressed: a failure after them leaves objects without a row (harmless, and
    // reused by a retry), never a row without its object.
    await blobStore.put(key, bytes, info.contentType);
    let thumb: string | null = thumbnailKey(sha256);
    try {
      await blobStore.put(thumb, await makeThumbnail(bytes), THUMBNAIL_CONTENT_TYPE);
    } catch (err) {
      logger.warn({ err }, "thumbnail not made; the backfill makes it later");
      thumb = null;
    }
    const textureId = embedder.textureModelId;
    const others = await Promise.all(
      models
        .all()
        .filter((r) => r !== runtime)
        .map(async ({ embedder: e }) => {
          const [o] = await e.embedMany([bytes]);
          if (!o?.ok) {
            logger.warn({ err: o?.error, modelId: e.modelId }, "image not embedded by a served model");
            return [];
          }
          const t = e.textureModelId;
          return [
            { modelId: e.modelId, embedding: o.embedding },
            ...(t && o.texture ? [{ modelId: t, embedding: o.texture }] : []),
          ];
        }),
    );
    const added = await edits.addImage({
      image: {
        filePath: null,
        storageUrl: blobStore.storageUrl(key),
        thumbnailKey: thumb,
        contentSha256: sha256,
        contentType: info.contentType,
        width: info.width,
        height: info.height,
        fileSizeBytes: bytes.length,
      },
      ...l,
      embeddings: [
        { modelId: embedder.modelId, embedding: outcome.embedding },
        ...(textureId && outcome.texture ? [{ modelId: textureId, embedding: outcome.texture }] : []),
        ...others.flat(),
      ],
      nearDuplicate: isNear
        ? { neighbourId: near.imageId, similarity: near.similarity, modelId: embedder.modelId }
        : null,
      changedBy,
    });
    if ("duplicateOf" in added)
      throw errors.duplicateImage(
        `These exact bytes were just added as image ${added.duplicateOf} by another request.`,
      );
    if (isNear)
      reports.push({
        index,
        imageId: added.imageId,
        neighbourImageId: near.imageId,
        similarity: near.similarity,
        hashDistance: near.hashDistance,
      });
    // The next image of the batch is checked against this one too.
    await applyChanges();
    return view(added.imageId);
  }

  return {
    /**
     * Adds images to the gallery, one at a time; each either goes in fully (original, thumbnail, row,
     * embeddings, change-log row) or changes nothing and is refused with its reason. A near-duplicate is
     * reported and added, or refused with `skipNearDuplicates`.
     * @throws DomainError BAD_USER_INPUT when the batch is empty or larger than GALLERY_ADD_MAX_IMAGES.
     */
    async add(
      items: readonly NewGalleryImage[],
      { skipNearDuplicates = false, changedBy }: { skipNearDuplicates?: boolean; changedBy: string },
    ): Promise<AddOutcome> {
      if (items.length === 0) throw errors.badInput("images is empty; give at least one image.");
      if (items.length > settings.maxImages)
        throw errors.badInput(
          `One call adds at most ${settings.maxImages} images (GALLERY_ADD_MAX_IMAGES); got ${items.length}. Split the batch.`,
        );
      const out: AddOutcome = { added: [], refused: [], nearDuplicates: [] };
      for (const [index, item] of items.entries()) {
        try {
          out.added.push(await addOne(item, index, skipNearDuplicates, changedBy, out.nearDuplicates));
        } catch (e) {
          if (!isDomainError(e)) logger.warn({ err: e, index }, "gallery image not added");
          out.refused.push(refusalOf(index, e));
        }
      }
      logger.info(
        { added: out.added.length, refused: out.refused.length, changedBy },
        "gallery images added",
      );
      return out;
    },

    /**
     * Gives an image another product and defect type (null or `normal`: a normal image, which moves it to
     * the normal index). Searches return the new labels at once.
     * @throws DomainError NOT_FOUND, BAD_USER_INPUT.
     */
    async relabel(
      imageId: number,
      input: { productCode: string; defectCode?: string | null | undefined },
      changedBy: string,
    ): Promise<GalleryImageView> {
      const l = labels(input);
      if (!(await edits.relabelImage({ imageId, ...l, changedBy })))
        throw errors.notFound(`No gallery image with id ${imageId}.`, { imageId });
      await applyChanges();
      return view(imageId);
    },

    /**
     * Removes an image: its row, embeddings and near-duplicate pairs at once (searches stop returning it
     * before the answer), then its original and thumbnail from object storage.
     * @throws DomainError NOT_FOUND.
     */
    async remove(imageId: number, changedBy: string): Promise<boolean> {
      const removed = await edits.removeImage(imageId, changedBy);
      if (!removed) throw errors.notFound(`No gallery image with id ${imageId}.`, { imageId });
      await applyChanges();
      const keys = [
        removed.storageUrl ? blobStore.keyFromStorageUrl(removed.storageUrl) : undefined,
        removed.thumbnailKey ?? undefined,
      ].filter((k): k is string => k !== undefined);
      // After the commit: a failure here leaves objects no row points at, never a row without its object.
      await blobStore
        .remove(keys)
        .catch((err) => logger.warn({ err, imageId, keys }, "objects of a removed image were not deleted"));
      logger.info({ imageId, changedBy }, "gallery image removed");
      return true;
    },

    /**
     * Near-duplicate groups to review, the most similar first: pairs recorded at ingestion, joined
     * transitively (union-find).
     * @param first - groups wanted, 1 to 100.
     * @throws DomainError BAD_USER_INPUT.
     */
    async nearDuplicates(first: number): Promise<NearDuplicateGroup[]> {
      if (!Number.isInteger(first) || first < 1 || first > 100)
        throw errors.badInput(`first must be an integer from 1 to 100; got ${first}.`);
      const pairs = await edits.nearDuplicatePairs(first * 20);
      const parent = new Map<number, number>();
      const find = (x: number): number => {
        let r = x;
        while (parent.has(r) && parent.get(r) !== r) r = parent.get(r) as number;
        parent.set(x, r);
        return r;
      };
      for (const p of pairs) {
        if (!parent.has(p.imageId)) parent.set(p.imageId, p.imageId);
        if (!parent.has(p.neighbourId)) parent.set(p.neighbourId, p.neighbourId);
        parent.set(find(p.imageId), find(p.neighbourId));
      }
      const groups = new Map<number, { similarity: number; ids: Set<number> }>();
      for (const p of pairs) {
        const root = find(p.imageId);
        const g = groups.get(root) ?? { similarity: -1, ids: new Set<number>() };
        g.similarity = Math.max(g.similarity, p.similarity);
        g.ids.add(p.imageId).add(p.neighbourId);
        groups.set(root, g);
      }
      const ranked = [...groups.values()].sort((a, b) => b.similarity - a.similarity).slice(0, first);
      const views = new Map(
        (await gallery.images(ranked.flatMap((g) => [...g.ids]))).map((v) => [v.imageId, v]),
      );
      return ranked.map((g) => ({
        similarity: g.similarity,
        images: [...g.ids].sort((a, b) => a - b).flatMap((id) => views.get(id) ?? []),
      }));
    },

    /**
     * Keeps an image that was reported as a near-duplicate: its pairs leave the review list.
     * @returns the pairs dismissed.
     */
    keepNearDuplicate: (imageId: number): Promise<number> => edits.dismissNearDuplicates(imageId),

    /**
     * The near-duplicate check an ingestion run uses (the CLI): against the indexes this process serves,
     * at NEAR_DUPLICATE_SIMILARITY, pairs recorded for the review list.
     */
    nearDuplicateCheck: ({ skip }: { skip: boolean }): NearDuplicateCheck => ({
      find: (bytes, embedding) =>
        findNearDuplicate(
          models.active().matchers.get("v2") as Matcher,
          blobStore,
          bytes,
          embedding,
          settings.nearDuplicate,
        ),
      skip,
      refresh: applyChanges,
      record: (pairs) =>
        edits.saveNearDuplicates(pairs.map((p) => ({ ...p, modelId: models.active().modelId }))),
    }),
  };
}

/** The gallery editor's type, derived from its factory. */
export type GalleryEditor = ReturnType<typeof createGalleryEditor>;
