import { pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";

/** A defect type (scratch, inclusion, ...). Normal images have no defect type. */
export const defectTypes = pgTable("defect_types", {
  defectTypeId: serial("defect_type_id").primaryKey(),
  defectCode: text("defect_code").notNull().unique(),
  defectName: text("defect_name").notNull(),
  description: text("description"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});
