import { readFile, realpath, rm, stat } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { type IndexManifest, type IndexStore, indexVersionId, manifestSchema } from "../index/index.store.js";
import { sha256, sha256File } from "../shared/hash.js";
import type { ImageType, MatcherVersion } from "../shared/types.js";
import type { BlobStore } from "../storage/blob-store.js";

/**
 * Bytes per stored part of an index file (8 MiB). minio-js reads each part into memory and, on plain HTTP,
 * hashes it for its SigV4 signature (SHA-256) synchronously on the main thread: a 64 MiB part held it
 * about 200 ms, which every search waiting then waited too; an 8 MiB part about 25 ms. More parts cost
 * only requests (a 1.5 GB index: 190 instead of 24). Artifacts stored with larger parts still load: the
 * part count is in their file list.
 */
export const ARTIFACT_PART_BYTES = 8 * 1024 * 1024;

/** Object-key prefix of every index artifact in the bucket. */
export const ARTIFACT_PREFIX = "index-artifacts/";
const LIST_FILE = "artifact.json";
const partKey = (key: string, file: string, i: number) => `${key}${file}.part-${String(i).padStart(5, "0")}`;

/** The file list of an artifact (`artifact.json`): each file's path in the artifact, size and sha256. */
const artifactListSchema = z.object({
  formatVersion: z.literal(1),
  indexVersionId: z.string(),
  files: z.array(
    z.object({
      /** `raw/<name>` or `adapted/<name>`. */
      path: z.string().regex(/^(raw|adapted)\/[A-Za-z0-9._-]+$/),
      bytes: z.number().int().nonnegative(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      /** Objects the file is stored as, `<path>.part-00000` on, each at most the part size. */
      parts: z.number().int().positive(),
    }),
  ),
});

/** What a publish wrote to the bucket. */
export interface PublishedArtifact {
  indexVersionId: string;
  /** Key prefix, `index-artifacts/<id>/`. */
  key: string;
  /** sha256 (hex) of `artifact.json`. */
  listSha256: string;
  /** Total bytes of the files. */
  bytes: number;
}

/** An artifact could not be used: missing, incomplete or not matching its checksums. */
export class ArtifactError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ArtifactError";
  }
}

/**
 * Index artifacts in object storage: the persisted folder of one index (and of its adapted twin, when the
 * gallery's cross-validation chose the adapted space) uploaded under a content-addressed key, so every
 * replica loads the bytes one replica built ("build offline, copy, swap", FAISS wiki: "Indexing 1G
 * vectors"). Downloads are verified file by file against `artifact.json`, whose own sha256 is in the
 * database row, before anything is moved into the local cache.
 */
export function createIndexArtifacts({
  blobStore,
  raw,
  adapted,
  partBytes = ARTIFACT_PART_BYTES,
}: {
  blobStore: BlobStore;
  /** The local cache of raw indexes. */
  raw: IndexStore;
  /** The local cache of adapted indexes (and their projections). */
  adapted: IndexStore;
  /**
   * Bytes per stored part of a file (default {@link ARTIFACT_PART_BYTES}; at most the blob store's
   * MAX_SINGLE_PUT_BYTES, so each part is one PUT on any S3-protocol server).
   */
  partBytes?: number;
}) {
  const partsOf = (bytes: number) => Math.max(1, Math.ceil(bytes / partBytes));
  const keyOf = (id: string) => `${ARTIFACT_PREFIX}${id}/`;

  return {
    keyOf,

    /**
     * Uploads the persisted index of (version, imageType) in the local cache, with its adapted twin when
     * its manifest says the adapted space is served, then `artifact.json` last, and checks every object's
     * size in the bucket.
     * @throws ArtifactError when the local files are missing or an upload does not match.
     */
    async publish(
      version: MatcherVersion,
      imageType: ImageType,
      manifest: IndexManifest,
    ): Promise<PublishedArtifact> {
      const id = indexVersionId(manifest);
      const key = keyOf(id);
      const parts: { prefix: "raw" | "adapted"; store: IndexStore }[] = [{ prefix: "raw", store: raw }];
      if (manifest.adaptation?.space === "adapted") parts.push({ prefix: "adapted", store: adapted });
      const files: z.infer<typeof artifactListSchema>["files"] = [];
      for (const { prefix, store } of parts) {
        const dir = await realpath(store.dirOf(version, imageType)).catch(() => {
          throw new ArtifactError(`no persisted ${prefix} index of ${version}/${imageType} to publish`);
        });
        for (const name of (await store.files(version, imageType)).sort()) {
          const file = path.join(dir, name);
          const [info, hash] = await Promise.all([stat(file), sha256File(file)]);
          const entry = {
            path: `${prefix}/${name}`,
            bytes: info.size,
            sha256: hash,
            parts: partsOf(info.size),
          };
          for (let i = 0; i < entry.parts; i++) {
            const start = i * partBytes;
            await blobStore.putFileRange(
              partKey(key, entry.path, i),
              file,
              start,
              Math.min(partBytes, info.size - start),
            );
          }
          files.push(entry);
        }
      }
      for (const f of files) {
        let stored = 0;
        for (let i = 0; i < f.parts; i++) stored += (await blobStore.size(partKey(key, f.path, i))) ?? 0;
        if (stored !== f.bytes)
          throw new ArtifactError(`uploaded ${key}${f.path} holds ${stored} bytes, expected ${f.bytes}`);
      }
      const list = JSON.stringify(artifactListSchema.parse({ formatVersion: 1, indexVersionId: id, files }));
      await blobStore.put(`${key}${LIST_FILE}`, Buffer.from(list), "application/json");
      const back = await blobStore.get(`${key}${LIST_FILE}`);
      if (!back || sha256(back) !== sha256(list))
        throw new ArtifactError(`${key}${LIST_FILE} did not read back as written`);
      return {
        indexVersionId: id,
        key,
        listSha256: sha256(list),
        bytes: files.reduce((n, f) => n + f.bytes, 0),
      };
    },

    /**
     * Downloads artifact `id` into staging folders of the local cache, verifies every file's sha256 and
     * the manifest's content address, then installs it (adapted first, raw last: a loader reads the raw
     * manifest first). Nothing is installed when any check fails.
     * @throws ArtifactError saying which file is missing or corrupt.
     */
    async download(
      version: MatcherVersion,
      imageType: ImageType,
      record: { indexVersionId: string; artifactKey: string; artifactSha256: string },
    ): Promise<void> {
      const key = record.artifactKey;
      const listBytes = await blobStore.get(`${key}${LIST_FILE}`);
      if (!listBytes) throw new ArtifactError(`${key}${LIST_FILE} is missing from the bucket`);
      if (sha256(listBytes) !== record.artifactSha256)
        throw new ArtifactError(
          `${key}${LIST_FILE} does not match the sha256 recorded for index version ${record.indexVersionId}`,
        );
      const list = artifactListSchema.parse(JSON.parse(listBytes.toString("utf8")));
      const staged: Partial<Record<"raw" | "adapted", string>> = {};
      try {
        for (const f of list.files) {
          const [prefix, name] = f.path.split("/") as ["raw" | "adapted", string];
          const store = prefix === "raw" ? raw : adapted;
          staged[prefix] ??= await store.stagingDir(version, imageType);
          const file = path.join(staged[prefix] as string, name);
          for (let i = 0; i < f.parts; i++) {
            if (!(await blobStore.getFile(partKey(key, f.path, i), file, { append: i > 0 })))
              throw new ArtifactError(`${partKey(key, f.path, i)} is missing from the bucket`);
          }
          const hash = await sha256File(file);
          if (hash !== f.sha256)
            throw new ArtifactError(
              `${key}${f.path} does not match its sha256 (got ${hash.slice(0, 12)}, expected ${f.sha256.slice(0, 12)})`,
            );
        }
        if (!staged.raw) throw new ArtifactError(`${key} holds no raw index`);
        const manifest = manifestSchema.parse(
          JSON.parse(await readFile(path.join(staged.raw, "manifest.json"), "utf8")),
        );
        if (indexVersionId(manifest) !== record.indexVersionId)
          throw new ArtifactError(
            `${key} holds index ${indexVersionId(manifest)}, not ${record.indexVersionId}`,
          );
        if (manifest.matcherVersion !== version || manifest.imageType !== imageType)
          throw new ArtifactError(`${key} is an index of ${manifest.matcherVersion}/${manifest.imageType}`);
        if (staged.adapted) {
          await adapted.install(version, imageType, staged.adapted);
          delete staged.adapted;
        }
        await raw.install(version, imageType, staged.raw);
        delete staged.raw;
      } finally {
        for (const dir of Object.values(staged)) if (dir) await rm(dir, { recursive: true, force: true });
      }
    },

    /** Deletes the files of artifact `key` from the bucket (retention). */
    async remove(key: string): Promise<void> {
      const listBytes = await blobStore.get(`${key}${LIST_FILE}`);
      const files = listBytes ? artifactListSchema.parse(JSON.parse(listBytes.toString("utf8"))).files : [];
      const parts = files.flatMap((f) => Array.from({ length: f.parts }, (_, i) => partKey(key, f.path, i)));
      await blobStore.remove([...parts, `${key}${LIST_FILE}`]);
    },
  };
}

/** The artifact store's type, derived from its factory. */
export type IndexArtifacts = ReturnType<typeof createIndexArtifacts>;
