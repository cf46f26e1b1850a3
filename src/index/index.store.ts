import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { sha256, sha256File } from "../shared/hash.js";
import type { ImageType, MatcherVersion } from "../shared/types.js";
import { type GalleryEntry, galleryEntrySchema } from "./gallery-entry.js";
import type { HnswParams } from "./hnsw.params.js";
import { type VectorIndex, vectorIndexFromFile } from "./vector-index.js";

const INDEX_FILE = "faiss_index.bin";
const METADATA_FILE = "metadata.json";
const MANIFEST_FILE = "manifest.json";

/** What a persisted index says about itself; checked before it is trusted. */
export const manifestSchema = z.object({
  formatVersion: z.literal(1),
  matcherVersion: z.enum(["v1", "v2"]),
  imageType: z.enum(["defect", "normal"]),
  modelId: z.string(),
  dimension: z.number().int().positive(),
  count: z.number().int().nonnegative(),
  factory: z.string(),
  /** The gallery source's fingerprint when the build started (see GallerySource.fingerprint). */
  galleryFingerprint: z.string().nullable(),
  /** ISO 8601 time the index was built. */
  builtAt: z.string(),
  /** sha256 (hex) of faiss_index.bin. */
  indexSha256: z.string(),
  /** sha256 (hex) of metadata.json. */
  metadataSha256: z.string(),
});

/** A persisted index's manifest. */
export type IndexManifest = z.infer<typeof manifestSchema>;

/** An index in memory with the metadata of each label. */
export interface LoadedIndex {
  manifest: IndexManifest;
  index: VectorIndex;
  /** `entries[label]` describes FAISS label `label`. */
  entries: GalleryEntry[];
}

/**
 * Persists indexes under `<root>/<v1|v2>/<defect|normal>/` as `faiss_index.bin`, `metadata.json` and
 * `manifest.json`. Writes go to a temporary sibling folder renamed into place, so a crash never leaves
 * a half-written index where a loader would find it.
 */
export function createIndexStore({ root }: { root: string }) {
  const dirOf = (version: MatcherVersion, imageType: ImageType) => path.join(root, version, imageType);
  return {
    dirOf,

    /** Writes `loaded` atomically, replacing any previous index of the same version and type. */
    async save(
      loaded: Omit<LoadedIndex, "manifest"> & {
        manifest: Omit<IndexManifest, "indexSha256" | "metadataSha256">;
      },
    ) {
      const { matcherVersion, imageType } = loaded.manifest;
      const dir = dirOf(matcherVersion, imageType);
      const parent = path.dirname(dir);
      await mkdir(parent, { recursive: true });
      const suffix = randomBytes(4).toString("hex");
      const tmp = path.join(parent, `.${imageType}.tmp-${suffix}`);
      const old = path.join(parent, `.${imageType}.old-${suffix}`);
      let manifest: IndexManifest;
      const metadata = JSON.stringify(loaded.entries);
      try {
        await mkdir(tmp);
        // Written by FAISS itself: no Buffer in between, so indexes over 2 GiB persist too.
        loaded.index.writeFile(path.join(tmp, INDEX_FILE));
        await writeFile(path.join(tmp, METADATA_FILE), metadata);
        manifest = {
          ...loaded.manifest,
          indexSha256: await sha256File(path.join(tmp, INDEX_FILE)),
          metadataSha256: sha256(metadata),
        };
        // The manifest last: a folder without one is never loaded.
        await writeFile(path.join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
        if (existsSync(dir)) await rename(dir, old);
        await rename(tmp, dir);
      } finally {
        await rm(tmp, { recursive: true, force: true });
        await rm(old, { recursive: true, force: true });
      }
      return manifest;
    },

    /** The manifest of a persisted index, or undefined when there is none or it does not parse. */
    async readManifest(version: MatcherVersion, imageType: ImageType): Promise<IndexManifest | undefined> {
      try {
        const raw = await readFile(path.join(dirOf(version, imageType), MANIFEST_FILE), "utf8");
        return manifestSchema.parse(JSON.parse(raw));
      } catch {
        return undefined;
      }
    },

    /**
     * Loads a persisted index, verifying checksums, count and dimension against its manifest.
     * @throws Error describing the mismatch when the files are missing, corrupt or inconsistent.
     */
    async load(version: MatcherVersion, imageType: ImageType, hnsw: HnswParams = {}): Promise<LoadedIndex> {
      const dir = dirOf(version, imageType);
      const manifest = manifestSchema.parse(
        JSON.parse(await readFile(path.join(dir, MANIFEST_FILE), "utf8")),
      );
      const indexFile = path.join(dir, INDEX_FILE);
      const [indexSha256, metadata] = await Promise.all([
        sha256File(indexFile),
        readFile(path.join(dir, METADATA_FILE), "utf8"),
      ]);
      if (indexSha256 !== manifest.indexSha256)
        throw new Error(`${dir}/${INDEX_FILE} does not match its manifest checksum`);
      if (sha256(metadata) !== manifest.metadataSha256)
        throw new Error(`${dir}/${METADATA_FILE} does not match its manifest checksum`);
      const entries = z.array(galleryEntrySchema).parse(JSON.parse(metadata));
      const index = await vectorIndexFromFile(indexFile, { efSearch: hnsw.efSearch });
      if (index.count !== manifest.count || entries.length !== manifest.count) {
        throw new Error(
          `${dir}: index has ${index.count} vectors, metadata ${entries.length}, manifest ${manifest.count}`,
        );
      }
      if (index.dimension !== manifest.dimension) {
        throw new Error(
          `${dir}: index dimension ${index.dimension} differs from manifest ${manifest.dimension}`,
        );
      }
      return { manifest, index, entries };
    },
  };
}

/** The store's type, derived from its factory. */
export type IndexStore = ReturnType<typeof createIndexStore>;
