import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import {
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { z } from "zod";
import { sha256, sha256File } from "../shared/hash.js";
import type { ImageType, MatcherVersion } from "../shared/types.js";
import { EXACT_VECTORS_FILE } from "./faiss/exact-vectors.js";
import { type GalleryColumns, readColumns, serializeColumns } from "./gallery-columns.js";
import type { IndexParams, VectorIndex, VectorIndexBackend } from "./vector-index.js";

const INDEX_FILE = "faiss_index.bin";
const METADATA_FILE = "metadata.json";
const MANIFEST_FILE = "manifest.json";

/** What a persisted index says about itself; checked before it is trusted. */
export const manifestSchema = z.object({
  formatVersion: z.literal(2),
  matcherVersion: z.enum(["v1", "v2"]),
  imageType: z.enum(["defect", "normal"]),
  modelId: z.string(),
  dimension: z.number().int().positive(),
  count: z.number().int().nonnegative(),
  /** INDEX_FACTORY as configured (`auto` or a factory string). */
  configuredFactory: z.string(),
  /** The factory string actually built (`auto` resolved by gallery size). */
  factory: z.string(),
  /** Parameters in force when saved (efSearch is re-applied from configuration at load). */
  params: z.object({
    efConstruction: z.number().int().optional(),
    efSearch: z.number().int().optional(),
    nprobe: z.number().int().optional(),
  }),
  /** The build's recall self-check; null for exact indexes and galleries under two images. */
  recall: z
    .object({
      recallAt10: z.number().min(0).max(1),
      queries: z.number().int().nonnegative(),
      floor: z.number().min(0).max(1),
    })
    .nullable(),
  /** Time FAISS took to train and fill the index (ms). */
  buildMs: z.number().nonnegative(),
  /** The gallery source's fingerprint when the build started (see GallerySource.fingerprint). */
  galleryFingerprint: z.string().nullable(),
  /**
   * The gallery change log's newest sequence number read before the build collected the gallery: changes
   * after it are replayed on top of the index when it is served. Absent for sources without a change log
   * (V1) and for indexes built before the log existed (replayed from 0).
   */
  changeWatermark: z.number().int().nonnegative().optional(),
  /** ISO 8601 time the index was built. */
  builtAt: z.string(),
  /** sha256 (hex) of faiss_index.bin. */
  indexSha256: z.string(),
  /** sha256 (hex) of metadata.json. */
  metadataSha256: z.string(),
  /** sha256 (hex) of vectors.f32, the full-precision vectors for exact re-ranking; null when there is none. */
  vectorsSha256: z.string().nullable().default(null),
  /**
   * The embedding space of the vectors: `raw` (the model's embedding) or `adapted` (projected by the
   * learned projection in `projection.file`, beside the index).
   */
  space: z.enum(["raw", "adapted"]).default("raw"),
  /** The projection an adapted index was built with; null for raw indexes. */
  projection: z
    .object({
      file: z.string(),
      sha256: z.string(),
      /** Fingerprint of the labelled gallery the projection was learned from (both image types). */
      trainingFingerprint: z.string(),
      params: z.object({ shrinkage: z.number(), blend: z.number(), outDim: z.number().int() }),
    })
    .nullable()
    .default(null),
  /**
   * The cross-validation decision taken at the last rebuild (raw indexes): served space, the reason, the
   * P@10 figures; null when adaptation is off or for V1.
   */
  adaptation: z
    .object({
      space: z.enum(["raw", "adapted"]),
      reason: z.string(),
      trainingFingerprint: z.string(),
      cvRawP10: z.number().nullable(),
      cvAdaptedP10: z.number().nullable(),
      /** The type prior chosen for searches of both image types, or why none (older manifests: absent). */
      typePrior: z.string().optional(),
      fitMs: z.number(),
    })
    .nullable()
    .default(null),
});

/** A persisted index's manifest. */
export type IndexManifest = z.infer<typeof manifestSchema>;

/**
 * The index version id of a manifest: sha256 (hex, 64 characters) of its canonical JSON. The manifest holds
 * the sha256 of every file and the build time, so the id names one build's bytes on every replica.
 */
export const indexVersionId = (manifest: IndexManifest): string =>
  sha256(JSON.stringify(manifestSchema.parse(manifest)));

/** An index being served, with the metadata of each label. */
export interface LoadedIndex {
  manifest: IndexManifest;
  index: VectorIndex;
  columns: GalleryColumns;
}

/**
 * Persists indexes under `<root>/<v1|v2>/<defect|normal>/` as `faiss_index.bin`, `metadata.json`,
 * `manifest.json` and, for compressed indexes, `vectors.f32` (exact re-ranking).
 *
 * `<defect|normal>` is a symbolic link to a complete, versioned folder `.<type>.v-<id>`. A save writes and
 * fsyncs a new folder, then switches the link with one `rename(2)` of a new link over the old one and
 * fsyncs the parent: a crash at any moment leaves the link on the old or on the new complete index, never
 * on none. {@link recover} (at startup) sweeps what a crash left behind. Writes go to a temporary sibling folder renamed into place, so a crash never leaves
 * a half-written index where a loader would find it.
 */
export function createIndexStore({
  root,
  faultAt,
}: {
  root: string;
  /** Test hook: called at each step of a save (a crash test kills the process there). */
  faultAt?: (step: SaveStep) => void;
}) {
  const dirOf = (version: MatcherVersion, imageType: ImageType) => path.join(root, version, imageType);
  const fault = (step: SaveStep) => faultAt?.(step);

  /** fsyncs the complete folder `tmp`, renames it to `versionName` and points the link at it. */
  async function moveIntoPlace(tmp: string, parent: string, imageType: ImageType, versionName: string) {
    const dir = path.join(parent, imageType);
    for (const f of await readdir(tmp)) await fsyncPath(path.join(tmp, f));
    await fsyncPath(tmp);
    await rename(tmp, path.join(parent, versionName));
    fault("version-in-place");
    const previous = await readlink(dir).catch(() => undefined);
    if (await isRealDir(dir)) {
      // A folder from before versioned saves: keep it as a version until the link replaces it.
      await rename(dir, path.join(parent, `.${imageType}.v-000000000-legacy`));
    }
    await pointAt(parent, imageType, versionName, fault);
    if (previous && previous !== versionName)
      await rm(path.join(parent, previous), { recursive: true, force: true });
    await rm(path.join(parent, `.${imageType}.v-000000000-legacy`), { recursive: true, force: true });
  }

  return {
    dirOf,

    /**
     * A new temporary folder beside the index of (version, imageType), on the same file system, for a
     * download that {@link install} then moves into place; the caller removes it when not installed.
     */
    async stagingDir(version: MatcherVersion, imageType: ImageType): Promise<string> {
      const parent = path.join(root, version);
      await mkdir(parent, { recursive: true });
      const tmp = path.join(parent, `.${imageType}.tmp-${randomBytes(4).toString("hex")}`);
      await mkdir(tmp);
      return tmp;
    },

    /**
     * Makes the complete folder `staged` (from {@link stagingDir}, files already verified) the persisted
     * index of (version, imageType), with the same crash safety as {@link save}.
     */
    async install(version: MatcherVersion, imageType: ImageType, staged: string): Promise<void> {
      const parent = path.join(root, version);
      const versionName = `.${imageType}.v-${Date.now().toString(36).padStart(9, "0")}-${randomBytes(4).toString("hex")}`;
      await moveIntoPlace(staged, parent, imageType, versionName);
    },

    /** The files of the persisted index of (version, imageType) (names in its folder), or [] when none. */
    async files(version: MatcherVersion, imageType: ImageType): Promise<string[]> {
      return readdir(dirOf(version, imageType)).catch(() => []);
    },

    /**
     * Repairs what an interrupted save left: drops temporary folders and links and versions nothing links
     * to; when the link is missing or dangling, points it at the newest version with a readable manifest.
     * Call before loading, while no save of the same index runs.
     */
    async recover(version: MatcherVersion, imageType: ImageType): Promise<void> {
      const parent = path.join(root, version);
      if (!existsSync(parent)) return;
      const link = dirOf(version, imageType);
      const target = await readlink(link).catch(() => undefined);
      const linked = target && existsSync(path.join(parent, target, MANIFEST_FILE)) ? target : undefined;
      const names = await readdir(parent);
      const versions = names.filter((n) => n.startsWith(`.${imageType}.v-`));
      let keep = linked;
      if (!keep && !(await isRealDir(link))) {
        // Newest complete version first: the id starts with a timestamp.
        for (const v of versions.sort().reverse()) {
          if (existsSync(path.join(parent, v, MANIFEST_FILE))) {
            keep = v;
            await pointAt(parent, imageType, v);
            break;
          }
        }
      }
      for (const n of names) {
        const leftover =
          n.startsWith(`.${imageType}.tmp-`) ||
          n.startsWith(`.${imageType}.old-`) ||
          n.startsWith(`.${imageType}.link-`) ||
          (n.startsWith(`.${imageType}.v-`) && n !== keep);
        if (leftover) await rm(path.join(parent, n), { recursive: true, force: true });
      }
    },

    /**
     * Writes the index (by its backend, off the main thread), its metadata and its manifest, then renames
     * the folder into place, replacing any previous index of the same version and type.
     * @returns the manifest written, with checksums.
     */
    async save(
      loaded: Omit<LoadedIndex, "manifest"> & {
        manifest: Omit<
          IndexManifest,
          "indexSha256" | "metadataSha256" | "vectorsSha256" | "space" | "projection" | "adaptation"
        > &
          Partial<Pick<IndexManifest, "space" | "projection" | "adaptation">>;
        /** Small files written beside the index (name -> content), e.g. the projection. */
        extraFiles?: Record<string, string>;
      },
    ): Promise<IndexManifest> {
      const { matcherVersion, imageType } = loaded.manifest;
      const dir = dirOf(matcherVersion, imageType);
      const parent = path.dirname(dir);
      await mkdir(parent, { recursive: true });
      const suffix = randomBytes(4).toString("hex");
      const tmp = path.join(parent, `.${imageType}.tmp-${suffix}`);
      const versionName = `.${imageType}.v-${Date.now().toString(36).padStart(9, "0")}-${suffix}`;
      let manifest: IndexManifest;
      try {
        await mkdir(tmp);
        // Written by FAISS itself in its worker: no Buffer in between, so indexes over 2 GiB persist too.
        await loaded.index.save(path.join(tmp, INDEX_FILE));
        await pipeline(serializeColumns(loaded.columns), createWriteStream(path.join(tmp, METADATA_FILE)));
        const vectorsFile = path.join(tmp, EXACT_VECTORS_FILE);
        const [indexSha256, metadataSha256, vectorsSha256] = await Promise.all([
          sha256File(path.join(tmp, INDEX_FILE)),
          sha256File(path.join(tmp, METADATA_FILE)),
          existsSync(vectorsFile) ? sha256File(vectorsFile) : null,
        ]);
        for (const [name, content] of Object.entries(loaded.extraFiles ?? {}))
          await writeFile(path.join(tmp, name), content);
        manifest = manifestSchema.parse({ ...loaded.manifest, indexSha256, metadataSha256, vectorsSha256 });
        // The manifest last: a folder without one is never loaded.
        await writeFile(path.join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
        fault("files-written");
        await moveIntoPlace(tmp, parent, imageType, versionName);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
      loaded.index.setSourceFile(path.join(dir, INDEX_FILE));
      return manifest;
    },

    /** A small file saved beside an index (see `extraFiles` of {@link save}), or undefined. */
    async readExtra(
      version: MatcherVersion,
      imageType: ImageType,
      name: string,
    ): Promise<string | undefined> {
      return readFile(path.join(dirOf(version, imageType), name), "utf8").catch(() => undefined);
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
     * Loads a persisted index into `backend`, checking count and dimension against its manifest. The
     * checksums are not read here (hashing a gigabyte index costs seconds of startup): call
     * {@link verify} once it is served.
     * @throws Error describing the mismatch when the files are missing, corrupt or inconsistent.
     */
    async load(
      version: MatcherVersion,
      imageType: ImageType,
      backend: VectorIndexBackend,
      params: IndexParams,
    ): Promise<LoadedIndex> {
      const dir = dirOf(version, imageType);
      const manifest = manifestSchema.parse(
        JSON.parse(await readFile(path.join(dir, MANIFEST_FILE), "utf8")),
      );
      const [columns, index] = await Promise.all([
        readColumns(path.join(dir, METADATA_FILE)),
        backend.load(path.join(dir, INDEX_FILE), { factory: manifest.factory, params }),
      ]);
      const problem =
        index.count !== manifest.count || columns.count !== manifest.count
          ? `index has ${index.count} vectors, metadata ${columns.count}, manifest ${manifest.count}`
          : index.dimension !== manifest.dimension
            ? `index dimension ${index.dimension} differs from manifest ${manifest.dimension}`
            : undefined;
      if (problem) {
        await index.close();
        throw new Error(`${dir}: ${problem}`);
      }
      return { manifest, index, columns };
    },

    /**
     * Checks both files against the manifest's sha256 (streamed, off the critical path).
     * @returns null when they match, else what differs.
     */
    async verify(
      version: MatcherVersion,
      imageType: ImageType,
      manifest: IndexManifest,
    ): Promise<string | null> {
      const dir = dirOf(version, imageType);
      const vectorsFile = path.join(dir, EXACT_VECTORS_FILE);
      const [indexSha256, metadataSha256, vectorsSha256] = await Promise.all([
        sha256File(path.join(dir, INDEX_FILE)),
        sha256File(path.join(dir, METADATA_FILE)),
        existsSync(vectorsFile) ? sha256File(vectorsFile) : null,
      ]);
      if (indexSha256 !== manifest.indexSha256)
        return `${dir}/${INDEX_FILE} does not match its manifest checksum`;
      if (metadataSha256 !== manifest.metadataSha256)
        return `${dir}/${METADATA_FILE} does not match its manifest checksum`;
      if (vectorsSha256 !== manifest.vectorsSha256)
        return `${dir}/${EXACT_VECTORS_FILE} does not match its manifest checksum`;
      return null;
    },
  };
}

/** Steps of a save, for {@link createIndexStore}'s test hook. */
export type SaveStep = "files-written" | "version-in-place" | "link-written";

/** fsync of a file or folder, so a rename that follows never exposes unwritten data after a power loss. */
async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const isRealDir = (p: string) =>
  lstat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );

/** Points `<parent>/<imageType>` at `versionName` with one rename of a new link over the old one. */
async function pointAt(
  parent: string,
  imageType: ImageType,
  versionName: string,
  fault: (step: SaveStep) => void = () => {},
): Promise<void> {
  const tmpLink = path.join(parent, `.${imageType}.link-${randomBytes(4).toString("hex")}`);
  await symlink(versionName, tmpLink);
  fault("link-written");
  await rename(tmpLink, path.join(parent, imageType));
  await fsyncPath(parent);
}

const SCRATCH_DIR = ".scratch";
/** Scratch files older than this are leftovers of a crashed process (ms). */
const SCRATCH_MAX_AGE_MS = 24 * 3600 * 1000;

/**
 * `<root>/.scratch`, created if missing, for vectors files of built but not yet saved indexes: on the same
 * file system as the index folders, so a save renames them instead of copying gigabytes. Files older than
 * a day are removed (a process that died mid-rebuild left them).
 */
export async function indexScratchDir(root: string): Promise<string> {
  const dir = path.join(root, SCRATCH_DIR);
  await mkdir(dir, { recursive: true });
  const now = Date.now();
  for (const name of await readdir(dir)) {
    const file = path.join(dir, name);
    const info = await stat(file).catch(() => undefined);
    if (info && now - info.mtimeMs > SCRATCH_MAX_AGE_MS) await rm(file, { force: true });
  }
  return dir;
}

/** The store's type, derived from its factory. */
export type IndexStore = ReturnType<typeof createIndexStore>;
