import { open } from "node:fs/promises";
import { z } from "zod";
import type { ImageType } from "../shared/types.js";
import type { GalleryEntry } from "./gallery-entry.js";

/**
 * A gallery's metadata in label order, held column by column: `imageId[label]`, `productIndex[label]`
 * into `products`, and so on. Typed arrays and shared code tables keep a million-image gallery to about
 * 150 bytes per image and make filters a scan of two `Uint32Array`s.
 */
export interface GalleryColumns {
  readonly count: number;
  readonly imageType: ImageType;
  /** Database ids (V2); -1 where there is none (V1 folder galleries). */
  readonly imageId: Int32Array;
  readonly products: readonly { code: string; name: string | null }[];
  readonly productIndex: Uint32Array;
  /** Defect types; `code` null for normal images. */
  readonly defects: readonly { code: string | null; name: string | null }[];
  readonly defectIndex: Uint32Array;
  readonly filePath: readonly (string | null)[];
  readonly storageUrl: readonly (string | null)[];
  readonly contentSha256: readonly (string | null)[];
}

/** The code filters use for normal images. */
export const NORMAL_DEFECT_CODE = "normal";

/** Builds columns from entries (label i = entries[i]). */
export function columnsFromEntries(imageType: ImageType, entries: readonly GalleryEntry[]): GalleryColumns {
  const products: { code: string; name: string | null }[] = [];
  const defects: { code: string | null; name: string | null }[] = [];
  const productAt = new Map<string, number>();
  const defectAt = new Map<string, number>();
  const count = entries.length;
  const imageId = new Int32Array(count);
  const productIndex = new Uint32Array(count);
  const defectIndex = new Uint32Array(count);
  const filePath: (string | null)[] = new Array(count);
  const storageUrl: (string | null)[] = new Array(count);
  const contentSha256: (string | null)[] = new Array(count);
  entries.forEach((e, i) => {
    imageId[i] = e.imageId ?? -1;
    const pKey = `${e.productCode}\u0000${e.productName ?? ""}`;
    let p = productAt.get(pKey);
    if (p === undefined) {
      p = products.push({ code: e.productCode, name: e.productName }) - 1;
      productAt.set(pKey, p);
    }
    productIndex[i] = p;
    const dKey = `${e.defectCode ?? ""}\u0000${e.defectName ?? ""}`;
    let d = defectAt.get(dKey);
    if (d === undefined) {
      d = defects.push({ code: e.defectCode, name: e.defectName }) - 1;
      defectAt.set(dKey, d);
    }
    defectIndex[i] = d;
    filePath[i] = e.filePath;
    storageUrl[i] = e.storageUrl;
    contentSha256[i] = e.contentSha256;
  });
  return {
    count,
    imageType,
    imageId,
    products,
    productIndex,
    defects,
    defectIndex,
    filePath,
    storageUrl,
    contentSha256,
  };
}

/** The entry of one label. */
export function entryAt(c: GalleryColumns, label: number): GalleryEntry {
  const product = c.products[c.productIndex[label] as number];
  const defect = c.defects[c.defectIndex[label] as number];
  const id = c.imageId[label] as number;
  return {
    imageId: id >= 0 ? id : null,
    imageType: c.imageType,
    productCode: product?.code ?? "",
    productName: product?.name ?? null,
    defectCode: defect?.code ?? null,
    defectName: defect?.name ?? null,
    filePath: c.filePath[label] ?? null,
    storageUrl: c.storageUrl[label] ?? null,
    contentSha256: c.contentSha256[label] ?? null,
  };
}

/** Product and defect-type filter; empty or undefined lists match everything. */
export interface GalleryFilter {
  productCodes?: readonly string[] | undefined;
  /** `normal` matches normal images. */
  defectCodes?: readonly string[] | undefined;
}

/**
 * What a search keeps: the labels of {@link GalleryFilter} and a similarity floor. The one declaration of
 * the search filters: the service's request, the matcher's options and the gallery delta all extend it.
 */
export interface SearchFilter extends GalleryFilter {
  /** Drop hits whose cosine similarity is below this, in [-1, 1]. */
  minScore?: number | undefined;
}

/** True when the filter restricts anything. */
export const isFiltering = (f: GalleryFilter) => !!f.productCodes?.length || !!f.defectCodes?.length;

/**
 * Labels whose product and defect type pass `filter`, ascending; a scan of two `Uint32Array`s
 * (about 2 ms per million labels).
 */
export function matchingLabels(c: GalleryColumns, filter: GalleryFilter): Int32Array {
  const productOk = c.products.map(
    (p) => !filter.productCodes?.length || filter.productCodes.includes(p.code),
  );
  const defectOk = c.defects.map(
    (d) => !filter.defectCodes?.length || filter.defectCodes.includes(d.code ?? NORMAL_DEFECT_CODE),
  );
  let n = 0;
  const out = new Int32Array(c.count);
  for (let i = 0; i < c.count; i++) {
    if (productOk[c.productIndex[i] as number] && defectOk[c.defectIndex[i] as number]) out[n++] = i;
  }
  return out.slice(0, n);
}

// --- persistence: metadata.json -------------------------------------------------------------------

const HEADER = z.object({
  formatVersion: z.literal(2),
  count: z.number().int().nonnegative(),
  imageType: z.enum(["defect", "normal"]),
  products: z.array(z.object({ code: z.string(), name: z.string().nullable() })),
  defects: z.array(z.object({ code: z.string().nullable(), name: z.string().nullable() })),
});

const COLUMN_NAMES = [
  "imageId",
  "productIndex",
  "defectIndex",
  "filePath",
  "storageUrl",
  "contentSha256",
] as const;

/** Values per JSON chunk written or checked between yields to the event loop. */
const CHUNK = 20_000;

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * `metadata.json` as one JSON object with one column per line:
 * `{"header":{...}` then `,"imageId":[...]` and so on, each on its own line. It stays plain JSON for any reader, while this
 * service reads it column by column. Written in chunks with yields, so a million-image gallery never
 * holds the event loop for more than a few milliseconds.
 * @returns the text chunks to write, in order (async so callers can stream them).
 */
export async function* serializeColumns(c: GalleryColumns): AsyncGenerator<string> {
  const header: z.infer<typeof HEADER> = {
    formatVersion: 2,
    count: c.count,
    imageType: c.imageType,
    products: [...c.products],
    defects: [...c.defects],
  };
  yield `{"header":${JSON.stringify(header)}`;
  for (const name of COLUMN_NAMES) {
    const column = c[name];
    yield `\n,${JSON.stringify(name)}:[`;
    for (let start = 0; start < c.count; start += CHUNK) {
      const end = Math.min(c.count, start + CHUNK);
      const parts: string[] = [];
      for (let i = start; i < end; i++) parts.push(JSON.stringify(column[i] ?? null));
      yield (start > 0 ? "," : "") + parts.join(",");
      await yieldToLoop();
    }
    yield "]";
  }
  yield "\n}\n";
}

const stringOrNull = (v: unknown) => typeof v === "string" || v === null;

/**
 * Reads `metadata.json` written by {@link serializeColumns}.
 * @throws Error naming the column when the file is not in that form or its columns disagree on length.
 */
export async function readColumns(file: string): Promise<GalleryColumns> {
  const handle = await open(file, "r");
  let text: string;
  try {
    text = await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
  const lines = text.split("\n");
  const first = lines[0] ?? "";
  if (!first.startsWith('{"header":')) throw new Error(`${file}: not a column metadata file`);
  const header = HEADER.parse(JSON.parse(first.slice('{"header":'.length)));
  const columns = new Map<string, unknown[]>();
  for (const line of lines.slice(1)) {
    if (!line.startsWith(",")) continue;
    const colon = line.indexOf(":");
    const name = JSON.parse(line.slice(1, colon)) as string;
    const values: unknown = JSON.parse(line.slice(colon + 1));
    if (!Array.isArray(values) || values.length !== header.count)
      throw new Error(`${file}: column ${name} does not have ${header.count} values`);
    columns.set(name, values);
  }
  const col = (name: (typeof COLUMN_NAMES)[number]) => {
    const v = columns.get(name);
    if (!v) throw new Error(`${file}: column ${name} is missing`);
    return v;
  };
  const ints = (name: (typeof COLUMN_NAMES)[number], max: number) => {
    const v = col(name);
    for (const x of v)
      if (!Number.isInteger(x) || (x as number) < -1 || (x as number) >= max)
        throw new Error(`${file}: column ${name} holds ${String(x)}`);
    return v as number[];
  };
  const strings = (name: (typeof COLUMN_NAMES)[number]) => {
    const v = col(name);
    if (!v.every(stringOrNull)) throw new Error(`${file}: column ${name} holds a value that is not a string`);
    return v as (string | null)[];
  };
  return {
    count: header.count,
    imageType: header.imageType,
    imageId: Int32Array.from(ints("imageId", 2 ** 31)),
    products: header.products,
    productIndex: Uint32Array.from(ints("productIndex", header.products.length)),
    defects: header.defects,
    defectIndex: Uint32Array.from(ints("defectIndex", header.defects.length)),
    filePath: strings("filePath"),
    storageUrl: strings("storageUrl"),
    contentSha256: strings("contentSha256"),
  };
}
