import { sql } from "drizzle-orm";
import { type Database, STATE_CHANNEL } from "./db.client.js";
import { galleryChanges } from "./gallery-changes.table.js";

/** What happened to an image, as the change log records it. */
export type GalleryChangeKind = "add" | "relabel" | "remove";

/**
 * Advisory lock key held by every transaction that appends to the change log, from just before its insert
 * until its commit: appends are then serialised, so `seq` order is commit order and a reader that saw
 * `seq` n has seen every change before it (a plain sequence can commit out of order).
 */
const CHANGE_LOG_LOCK = 0x67616c6c6572; // "galler"

/** A transaction of the database handle. */
export type Tx = Parameters<Parameters<Database["transaction"]>[0]>[0];

/**
 * Appends change rows and announces them (NOTIFY `gallery`, delivered on commit); call last in a
 * transaction.
 */
export async function appendChanges(
  tx: Tx,
  rows: readonly { imageId: number; kind: GalleryChangeKind }[],
  changedBy: string,
): Promise<void> {
  if (rows.length === 0) return;
  await tx.execute(sql`select pg_advisory_xact_lock(${CHANGE_LOG_LOCK})`);
  await tx.insert(galleryChanges).values(rows.map((r) => ({ ...r, changedBy })));
  await tx.execute(sql`select pg_notify(${STATE_CHANNEL}, 'gallery')`);
}
