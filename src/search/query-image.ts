import type { Logger } from "pino";
import type { ImageRepository } from "../db/images.repository.js";
import type { ImageLimits } from "../embedding/image.decoder.js";
import { errors } from "../shared/errors.js";
import type { BlobStore } from "../storage/blob-store.js";
import { isCallerReadableKey } from "../storage/original-key.js";
import { fetchStage } from "./fetch-stage.js";
import type { QueryImage } from "./search-request.js";

/**
 * A query image, resolved: its encoded bytes to embed, or the embedding stored for a gallery image. `exclude`
 * is the content hash of a gallery image to leave out of the results ("find similar").
 */
export type ResolvedQueryImage =
  | { kind: "bytes"; bytes: Buffer; exclude?: string | undefined }
  | {
      kind: "stored";
      /** L2-normalised, of the asked model. */
      embedding: Float32Array;
      /** The stored texture descriptor, when asked for and stored; else null. */
      texture: Float32Array | null;
      exclude: string;
    };

/**
 * Decodes standard base64 (RFC 4648 section 4; the URL-safe alphabet is accepted too), or undefined when
 * `body` is not whole base64. Node's decoder skips characters outside the alphabet and stops at padding,
 * so a valid body is one whose length is a multiple of 4, whose `=` are only its last one or two
 * characters, and which decodes to exactly 3 bytes per 4 characters less the padding.
 */
function strictBase64(body: string): Buffer | undefined {
  if (body.length % 4 !== 0) return undefined;
  const firstPad = body.indexOf("=");
  const padding = firstPad === -1 ? 0 : body.length - firstPad;
  if (padding > 2 || (padding === 2 && body[body.length - 1] !== "=")) return undefined;
  const decoded = Buffer.from(body, "base64");
  return decoded.length === (body.length / 4) * 3 - padding ? decoded : undefined;
}

/** Which model's stored vectors a gallery image's query takes: embedding, and texture descriptor. */
export interface StoredVectorKeys {
  modelId: string;
  /** Null when the model has no texture tensor (or the texture is not wanted). */
  textureModelId: string | null;
}

/**
 * The four query image sources of a search (bytes, base64, storageKey, galleryImageId), resolved to bytes
 * or a stored embedding. Size is checked where it avoids holding a huge buffer (base64 before decoding, a
 * caller's object before downloading), against the same `limits.maxBytes` the decoder checks.
 */
export function createQueryImages({
  repository,
  blobStore,
  limits,
  logger,
}: {
  repository: ImageRepository;
  blobStore: BlobStore;
  /** The decoder's limits; only `maxBytes` (bytes) is read here. */
  limits: Pick<ImageLimits, "maxBytes">;
  logger: Logger;
}) {
  const fetching = <T>(run: () => Promise<T>) => fetchStage(logger, run);

  function decodeBase64(input: string): Buffer {
    const raw = input.startsWith("data:") ? input.replace(/^data:[^;,]*;base64,/, "") : input;
    // Checked before decoding, so a huge payload costs no allocation.
    const approxBytes = Math.floor((raw.length * 3) / 4);
    if (approxBytes > limits.maxBytes) {
      throw errors.imageTooLarge(
        `The image is about ${approxBytes} bytes; the limit is ${limits.maxBytes} bytes. Send a smaller or more compressed image.`,
        { sizeBytes: approxBytes, maxBytes: limits.maxBytes },
      );
    }
    // Line breaks are scanned for only when the body as sent is not plain base64 (a regular expression
    // over every 100 KB body cost about 0.4 ms of main-thread time).
    const decoded = strictBase64(raw) ?? strictBase64(raw.replace(/\s+/g, ""));
    if (!decoded) {
      throw errors.badInput(
        "image.base64 is not valid base64; encode the image file's bytes with standard base64.",
      );
    }
    return decoded;
  }

  /**
   * An original named by a caller: only keys of the service's own layout are read, and every refusal
   * (bad key, no such object, too large) is the same NOT_FOUND, so the answer tells nothing about what
   * else the bucket holds. Its size is asked first so an oversized object is never downloaded.
   */
  async function fetchCallerObject(key: string): Promise<Buffer> {
    const refused = () =>
      errors.notFound(
        "No readable image has that storageKey. Keys are images/<2 hex>/<sha256>.<ext> (originals, as ingestion stores them) or queries/<name>.",
      );
    if (!isCallerReadableKey(key)) throw refused();
    const size = await blobStore.size(key);
    if (size === undefined || size > limits.maxBytes) throw refused();
    const bytes = await blobStore.get(key);
    if (!bytes) throw refused();
    return bytes;
  }

  /** A gallery image's original; ingestion stored it within the limit, the decoder checks it again. */
  async function fetchOriginal(key: string): Promise<Buffer> {
    const bytes = await blobStore.get(key);
    if (!bytes)
      throw errors.notFound(`No object '${key}' in bucket '${blobStore.bucket}'.`, { storageKey: key });
    return bytes;
  }

  return {
    /**
     * Resolves the one source `image` sets.
     * @param stored - whose stored vectors a gallery image's query takes (the searching model's).
     * @throws DomainError BAD_USER_INPUT (bad base64), IMAGE_TOO_LARGE (base64 over the limit),
     *   NOT_FOUND (no such gallery image or readable object), SERVICE_UNAVAILABLE (database or object
     *   storage down or slow).
     */
    async resolve(image: QueryImage, stored: StoredVectorKeys): Promise<ResolvedQueryImage> {
      if (image.galleryImageId !== undefined && image.galleryImageId !== null) {
        const id = image.galleryImageId;
        const row = await fetching(() => repository.getGalleryImage(id));
        if (!row) throw errors.notFound(`No gallery image with id ${id}.`, { galleryImageId: id });
        const exclude = row.contentSha256;
        const embedding = await fetching(() => repository.getEmbedding(id, stored.modelId));
        if (embedding) {
          // Its texture too when an ALL search may lean by it (ingestion and rebuilds store it); without
          // one, the search merges by similarity rather than re-embedding the original.
          const textureId = stored.textureModelId;
          const texture = textureId
            ? await fetching(() => repository.getEmbedding(id, textureId))
            : undefined;
          return { kind: "stored", embedding, texture: texture ?? null, exclude };
        }
        const key = row.storageUrl ? blobStore.keyFromStorageUrl(row.storageUrl) : undefined;
        if (!key) throw errors.notFound(`Gallery image ${id} has no original in object storage to embed.`);
        return { kind: "bytes", bytes: await fetching(() => fetchOriginal(key)), exclude };
      }
      if (image.storageKey !== undefined && image.storageKey !== null) {
        const storageKey = image.storageKey;
        return { kind: "bytes", bytes: await fetching(() => fetchCallerObject(storageKey)) };
      }
      if (image.bytes !== undefined && image.bytes !== null) return { kind: "bytes", bytes: image.bytes };
      return { kind: "bytes", bytes: decodeBase64(image.base64 ?? "") };
    },
  };
}

/** The query image sources' type, derived from its factory. */
export type QueryImages = ReturnType<typeof createQueryImages>;
