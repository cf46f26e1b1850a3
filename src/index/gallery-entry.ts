import { z } from "zod";

/** Metadata of one gallery image, stored in `metadata.json` in FAISS label order. */
export const galleryEntrySchema = z.object({
  /** Database id (V2); null for V1 folder galleries. */
  imageId: z.number().int().nullable(),
  imageType: z.enum(["defect", "normal"]),
  productCode: z.string(),
  productName: z.string().nullable(),
  /** Null for normal images. */
  defectCode: z.string().nullable(),
  defectName: z.string().nullable(),
  filePath: z.string().nullable(),
  storageUrl: z.string().nullable(),
  contentSha256: z.string().nullable(),
});

/** One gallery image's metadata. */
export type GalleryEntry = z.infer<typeof galleryEntrySchema>;
