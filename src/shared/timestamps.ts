/**
 * A timestamp column as pg returns it (`Date` for `timestamptz`) as ISO 8601, or null for SQL null.
 * Other values (already strings) pass through as text.
 */
export const isoOrNull = (v: unknown): string | null =>
  v === null || v === undefined ? null : v instanceof Date ? v.toISOString() : String(v);

/** {@link isoOrNull} for a column that is never null. */
export const iso = (v: unknown): string => isoOrNull(v) ?? "";
