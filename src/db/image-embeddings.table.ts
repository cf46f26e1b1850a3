import { customType, integer, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";
import { images } from "./images.table.js";

/** float32 little-endian vector stored as bytea: 4 bytes per dimension, no extension needed. */
const float32Vector = customType<{ data: Float32Array; driverData: Buffer }>({
  dataType: () => "bytea",
  toDriver: (v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength),
  fromDriver: (b) => {
    // Copy: the driver's Buffer may be unaligned for a Float32Array view.
    const copy = new Uint8Array(b.byteLength);
    copy.set(b);
    return new Float32Array(copy.buffer);
  },
});

/** One embedding per (image, model): computed once, reused by every rebuild. */
export const imageEmbeddings = pgTable(
  "image_embeddings",
  {
    imageId: integer("image_id")
      .notNull()
      .references(() => images.imageId, { onDelete: "cascade" }),
    /** `<preset>@<first 12 hex of the model file's sha256>`: a new model file never reuses old vectors. */
    modelId: text("model_id").notNull(),
    dimension: integer("dimension").notNull(),
    /** L2-normalised float32 vector of length `dimension`. */
    embedding: float32Vector("embedding").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.imageId, t.modelId] })],
);
