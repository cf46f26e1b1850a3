import { pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";

/** A manufactured product; `product_code` is what inspectors and file names use. */
export const products = pgTable("products", {
  productId: serial("product_id").primaryKey(),
  productCode: text("product_code").notNull().unique(),
  productName: text("product_name").notNull(),
  description: text("description"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});
