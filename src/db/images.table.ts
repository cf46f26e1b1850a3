import { sql } from "drizzle-orm";
import { bigint, check, index, integer, pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";
import { defectTypes } from "./defect-types.table.js";
import { products } from "./products.table.js";

/** One gallery image: its labels and where its bytes live. */
export const images = pgTable(
  "images",
  {
    imageId: serial("image_id").primaryKey(),
    productId: integer("product_id")
      .notNull()
      .references(() => products.productId),
    /** Null for normal images. */
    defectTypeId: integer("defect_type_id").references(() => defectTypes.defectTypeId),
    imageType: text("image_type", { enum: ["normal", "defect"] }).notNull(),
    /** Local path the image was ingested from, if any. */
    filePath: text("file_path"),
    /** `s3://<bucket>/<key>` of the original in object storage. */
    storageUrl: text("storage_url"),
    /** Object key of the thumbnail (JPEG, at most 256 pixels a side); null until one is made. */
    thumbnailKey: text("thumbnail_key"),
    contentSha256: text("content_sha256").notNull().unique(),
    contentType: text("content_type"),
    width: integer("width").notNull(),
    height: integer("height").notNull(),
    fileSizeBytes: bigint("file_size_bytes", { mode: "number" }).notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("images_image_type_idx").on(t.imageType),
    index("images_product_id_idx").on(t.productId),
    index("images_defect_type_id_idx").on(t.defectTypeId),
    check(
      "images_type_matches_defect",
      sql`(${t.imageType} = 'normal' and ${t.defectTypeId} is null) or (${t.imageType} = 'defect' and ${t.defectTypeId} is not null)`,
    ),
  ],
);
