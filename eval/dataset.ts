import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { type DatasetImage, listDatasetImages } from "../src/ingest/dataset.reader.js";

/** A dataset image with its bytes and content hash. */
export interface LoadedImage extends DatasetImage {
  bytes: Buffer;
  sha256: string;
  /** `<product>/<defect or good>`: the relevance class. */
  label: string;
}

/** A labelled dataset split into gallery and queries, as the service will see it. */
export interface EvalDataset {
  name: string;
  root: string;
  /** Gallery images, one per distinct content (identical bytes are imported once, like ingestion does). */
  gallery: LoadedImage[];
  /** The gallery rows of split.csv, duplicates included (what ingestion is given). */
  galleryRows: LoadedImage[];
  queries: LoadedImage[];
  /** Sanity checks of the split. */
  checks: {
    /** Near-duplicate groups with members on both sides (must be 0). */
    groupsStraddling: number;
    /** Queries whose exact bytes are also in the gallery (must be 0). */
    queriesInGallery: number;
    /** Gallery files skipped as byte-identical to an earlier one. */
    galleryDuplicates: number;
  };
}

/** The relevance class of an image: same product and same defect type (`good` for normal images). */
export const labelOf = (img: Pick<DatasetImage, "productCode" | "defectCode">): string =>
  `${img.productCode}/${img.defectCode ?? "good"}`;

async function load(images: readonly DatasetImage[]): Promise<LoadedImage[]> {
  return Promise.all(
    images.map(async (img) => {
      const bytes = await readFile(img.path);
      return { ...img, bytes, sha256: createHash("sha256").update(bytes).digest("hex"), label: labelOf(img) };
    }),
  );
}

/**
 * Reads a dataset folder `<product>/<defect or good>/<files>` with its `split.csv` and checks the split:
 * no near-duplicate group and no identical file on both sides.
 */
export async function loadEvalDataset(root: string): Promise<EvalDataset> {
  const galleryRows = await load(await listDatasetImages({ root, split: "gallery" }));
  const queries = await load(await listDatasetImages({ root, split: "query" }));
  const seen = new Set<string>();
  const gallery = galleryRows.filter((g) => {
    if (seen.has(g.sha256)) return false;
    seen.add(g.sha256);
    return true;
  });
  const galleryGroups = new Set(galleryRows.flatMap((g) => (g.groupId ? [g.groupId] : [])));
  const straddling = new Set(
    queries.flatMap((q) => (q.groupId && galleryGroups.has(q.groupId) ? [q.groupId] : [])),
  );
  return {
    name: path.basename(root),
    root,
    gallery,
    galleryRows,
    queries,
    checks: {
      groupsStraddling: straddling.size,
      queriesInGallery: queries.filter((q) => seen.has(q.sha256)).length,
      galleryDuplicates: galleryRows.length - gallery.length,
    },
  };
}
