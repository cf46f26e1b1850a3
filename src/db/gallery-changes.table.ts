import {
  bigserial,
  doublePrecision,
  index,
  integer,
  pgTable,
  primaryKey,
  text,
  timestamp,
} from "drizzle-orm/pg-core";
import { images } from "./images.table.js";

/**
 * The gallery's change log: one row per image added, relabelled or removed, in commit order of `seq`.
 * Every replica tails it to keep its served indexes in step with the database without a rebuild; an index
 * records the last `seq` its build read (its watermark), so a restart replays only what came after.
 * No foreign key: the row of a removed image outlives the image.
 */
export const galleryChanges = pgTable(
  "gallery_changes",
  {
    seq: bigserial("seq", { mode: "number" }).primaryKey(),
    imageId: integer("image_id").notNull(),
    kind: text("kind", { enum: ["add", "relabel", "remove"] }).notNull(),
    /** `admin-token:<12 hex>`, `ingest` (the CLI), or `config`. */
    changedBy: text("changed_by").notNull(),
    changedAt: timestamp("changed_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("gallery_changes_image_id_idx").on(t.imageId)],
);

/**
 * Near-duplicate pairs found at ingestion: a new image whose nearest gallery neighbour's cosine similarity
 * (raw embedding of `model_id`) reached the near-duplicate threshold. Listed for review until one of the
 * two is removed (cascade) or the pair is kept.
 */
export const nearDuplicates = pgTable(
  "near_duplicates",
  {
    imageId: integer("image_id")
      .notNull()
      .references(() => images.imageId, { onDelete: "cascade" }),
    neighbourId: integer("neighbour_id")
      .notNull()
      .references(() => images.imageId, { onDelete: "cascade" }),
    similarity: doublePrecision("similarity").notNull(),
    modelId: text("model_id").notNull(),
    detectedAt: timestamp("detected_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.imageId, t.neighbourId] }),
    index("near_duplicates_neighbour_id_idx").on(t.neighbourId),
  ],
);
