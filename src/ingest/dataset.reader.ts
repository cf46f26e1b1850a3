import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "csv-parse/sync";
import { z } from "zod";
import { type ImageType, NORMAL_DEFECT_CODES } from "../shared/types.js";

/** Extensions treated as images when walking a dataset folder. */
const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"]);

/** One labelled image of a dataset folder. */
export interface DatasetImage {
  /** Absolute path. */
  path: string;
  /** `<product>/<defect>/<file>`, relative to the dataset root. */
  relPath: string;
  productCode: string;
  /** null for normal (`good`) images. */
  defectCode: string | null;
  imageType: ImageType;
  /** Near-duplicate group from split.csv, when given. */
  groupId: string | null;
}

/** Which rows of split.csv to keep. */
export type SplitName = "gallery" | "query";

const splitRowSchema = z.object({
  path: z.string(),
  split: z.enum(["gallery", "query"]),
  group_id: z.string().optional(),
});

/** Key by the last three path segments, `<product>/<defect>/<file>`, which both layouts share. */
const tail3 = (p: string) => p.split(/[\\/]/).slice(-3).join("/");

/**
 * Lists the images of a folder laid out as `<product>/<defect_type or good>/<files>`, sorted by path.
 * @param split - keep only rows of this split, read from `splitCsv` (columns path, split, group_id).
 * @throws Error when the folder or split file cannot be read, or split.csv lacks the columns.
 */
export async function listDatasetImages({
  root,
  split,
  splitCsv,
}: {
  root: string;
  split?: SplitName | undefined;
  splitCsv?: string | undefined;
}): Promise<DatasetImage[]> {
  const images: DatasetImage[] = [];
  for (const product of (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory())) {
    if (product.name.startsWith("_") || product.name.startsWith(".")) continue;
    const productDir = path.join(root, product.name);
    for (const defect of (await readdir(productDir, { withFileTypes: true })).filter((d) =>
      d.isDirectory(),
    )) {
      const defectDir = path.join(productDir, defect.name);
      const normal = NORMAL_DEFECT_CODES.has(defect.name.toLowerCase());
      for (const file of await readdir(defectDir)) {
        if (!IMAGE_EXTENSIONS.has(path.extname(file).toLowerCase())) continue;
        images.push({
          path: path.join(defectDir, file),
          relPath: `${product.name}/${defect.name}/${file}`,
          productCode: product.name,
          defectCode: normal ? null : defect.name,
          imageType: normal ? "normal" : "defect",
          groupId: null,
        });
      }
    }
  }
  images.sort((a, b) => a.relPath.localeCompare(b.relPath));
  if (!split) return images;
  const csvPath = splitCsv ?? path.join(root, "split.csv");
  const rows = z
    .array(splitRowSchema)
    .parse(parse(await readFile(csvPath, "utf8"), { columns: true, skip_empty_lines: true }));
  const wanted = new Map(
    rows.filter((r) => r.split === split).map((r) => [tail3(r.path), r.group_id ?? null]),
  );
  return images.flatMap((img) => {
    const group = wanted.get(img.relPath);
    return group === undefined ? [] : [{ ...img, groupId: group }];
  });
}

/** `steel_strip_xsdd` -> `Steel strip xsdd`: a readable default name for a code. */
export function humanizeCode(code: string): string {
  const words = code.replace(/[_-]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}
