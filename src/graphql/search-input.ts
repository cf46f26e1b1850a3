import { z } from "zod";
import { requestRefusals, type SearchRequest } from "../search/search-request.js";
import { errors } from "../shared/errors.js";
import type { SearchSimilarInput } from "./generated/resolvers-types.js";
import { idOf, idRefusal } from "./ids.js";
import { readUpload, type UploadPromise } from "./upload.js";

/** The limits searchSimilar's input is checked against (from the configuration, passed in once). */
export interface SearchInputLimits {
  /** MAX_TOP_K: largest topK. */
  maxTopK: number;
  /** Largest perGroup. */
  maxPerGroup: number;
  /** MAX_IMAGE_BYTES: an upload is cut off past it (bytes). */
  maxImageBytes: number;
}

/** searchSimilar's input parsed into the service's request, the upload still to read. */
type ParsedSearchInput = Omit<SearchRequest, "image"> & {
  image: Omit<SearchRequest["image"], "bytes"> & { file?: UploadPromise | undefined };
};

const given = (v: unknown) => v !== undefined && v !== null;

/**
 * The zod schema of GraphQL's `SearchSimilarInput` (enums already mapped to the service's values by the
 * resolvers), giving the service's {@link SearchRequest}: defaults applied, nulls dropped, the gallery
 * image id parsed, and every range and the single image source checked, with one message per rule.
 */
export function searchInputSchema({
  maxTopK,
  maxPerGroup,
}: Pick<SearchInputLimits, "maxTopK" | "maxPerGroup">) {
  const galleryImageId = z
    .union([z.string(), z.number()])
    .nullish()
    .transform((v, ctx) => {
      if (v === undefined || v === null) return undefined;
      const id = idOf(v);
      if (id === undefined) {
        ctx.issues.push({ code: "custom", message: idRefusal(v, "image.galleryImageId"), input: v });
        return z.NEVER;
      }
      return id;
    });
  const image = z
    .object({
      file: z.custom<UploadPromise>().nullish(),
      base64: z.string().nullish(),
      // Empty or odd keys are the query image module's to refuse, with the same NOT_FOUND as a missing one.
      storageKey: z.string().nullish(),
      galleryImageId,
    })
    .refine((i) => [i.file, i.base64, i.storageKey, i.galleryImageId].filter(given).length === 1, {
      error: requestRefusals.imageSources(),
    });
  return z
    .object({
      topK: z
        .number()
        .nullish()
        .transform((v) => v ?? 5)
        .refine((v) => Number.isInteger(v) && v >= 1 && v <= maxTopK, {
          error: (iss) => requestRefusals.topK(maxTopK, iss.input),
        }),
      minScore: z
        .number()
        .nullish()
        .refine((v) => !given(v) || ((v as number) >= -1 && (v as number) <= 1), {
          error: (iss) => requestRefusals.minScore(iss.input),
        }),
      perGroup: z
        .number()
        .nullish()
        .transform((v) => v ?? 3),
      groupBy: z.literal("defectType").nullish(),
      image,
      imageType: z
        .enum(["defect", "normal", "all"])
        .nullish()
        .transform((v) => v ?? "defect"),
      filter: z
        .object({
          productCodes: z.array(z.string()).nullish(),
          defectCodes: z.array(z.string()).nullish(),
        })
        .nullish(),
      version: z.enum(["v1", "v2"]).nullish(),
      space: z.enum(["raw", "adapted"]).nullish(),
    })
    .superRefine((r, ctx) => {
      // perGroup counts only when groups are asked for, as before (its default applies otherwise).
      if (r.groupBy && !(Number.isInteger(r.perGroup) && r.perGroup >= 1 && r.perGroup <= maxPerGroup))
        ctx.addIssue({
          code: "custom",
          path: ["perGroup"],
          message: requestRefusals.perGroup(maxPerGroup, r.perGroup),
        });
    })
    .transform(
      (r): ParsedSearchInput => ({
        image: {
          file: r.image.file ?? undefined,
          base64: r.image.base64,
          storageKey: r.image.storageKey,
          galleryImageId: r.image.galleryImageId,
        },
        imageType: r.imageType,
        topK: r.topK,
        minScore: r.minScore ?? undefined,
        productCodes: r.filter?.productCodes ?? undefined,
        defectCodes: r.filter?.defectCodes ?? undefined,
        version: r.version,
        space: r.space,
        groupBy: r.groupBy,
        perGroup: r.perGroup,
      }),
    );
}

/**
 * Builds the parser of searchSimilar's input, run by its resolver before the search is admitted: bad input
 * is refused at once, never after a wait for a search slot.
 * @returns a function from the GraphQL input to a validated {@link SearchRequest}, the upload read (at
 *   most `maxImageBytes`) once the rest is known to be valid.
 * @throws DomainError BAD_USER_INPUT naming every rule broken; IMAGE_TOO_LARGE, BAD_USER_INPUT from
 *   {@link readUpload}.
 */
export function createSearchInputParser(limits: SearchInputLimits) {
  const schema = searchInputSchema(limits);
  return async (input: SearchSimilarInput): Promise<SearchRequest> => {
    const parsed = schema.safeParse(input);
    if (!parsed.success) throw errors.badInput(parsed.error.issues.map((i) => i.message).join(" "));
    const { file, ...image } = parsed.data.image;
    return {
      ...parsed.data,
      image: file ? { ...image, bytes: await readUpload(file, limits.maxImageBytes) } : image,
    };
  };
}

/** The parser's type: searchSimilar's GraphQL input in, the service's request out. */
export type SearchInputParser = ReturnType<typeof createSearchInputParser>;
