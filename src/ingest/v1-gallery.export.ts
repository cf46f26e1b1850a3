import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { encodeV1Code } from "../matchers/file-name.convention.js";
import type { DatasetImage } from "./dataset.reader.js";

/**
 * Writes a V1 gallery folder from labelled images: each file copied as
 * `{product}_{defect or good}_{original name}` with `_` in codes replaced by `-`, so V1 and V2 can be
 * compared on the same gallery.
 * @returns the number of files written.
 */
export async function exportV1Gallery({
  images,
  outDir,
}: {
  images: readonly DatasetImage[];
  outDir: string;
}): Promise<number> {
  await mkdir(outDir, { recursive: true });
  await Promise.all(
    images.map((img) => {
      const name = `${encodeV1Code(img.productCode)}_${encodeV1Code(img.defectCode ?? "good")}_${path.basename(img.path)}`;
      return copyFile(img.path, path.join(outDir, name));
    }),
  );
  return images.length;
}
