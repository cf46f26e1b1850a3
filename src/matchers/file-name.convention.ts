import { NORMAL_DEFECT_CODES } from "../shared/types.js";

/** Extensions the V1 gallery folder may hold. */
export const V1_IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  ".jpg",
  ".jpeg",
  ".png",
  ".bmp",
  ".webp",
  ".tif",
  ".tiff",
]);

/** Product and defect parsed from a V1 file name. */
export interface ParsedV1Name {
  productCode: string;
  /** null for normal images (`normal`/`good`/`ok` in the name). */
  defectCode: string | null;
}

/**
 * Parses the old system's `{product}_{defect}_{anything}.{ext}` file names: the first two
 * underscore-separated fields are the codes, so codes themselves cannot contain `_`
 * (see {@link encodeV1Code}).
 * @returns undefined for names that do not follow the convention.
 */
export function parseV1FileName(fileName: string): ParsedV1Name | undefined {
  const base = fileName.replace(/\.[^.]+$/, "");
  const [product, defect, ...rest] = base.split("_");
  if (!product || !defect || rest.length === 0 || rest.join("_") === "") return undefined;
  return { productCode: product, defectCode: NORMAL_DEFECT_CODES.has(defect.toLowerCase()) ? null : defect };
}

/** Makes a code safe for a V1 file name: `_` (the field separator) becomes `-`. */
export function encodeV1Code(code: string): string {
  return code.replaceAll("_", "-");
}
