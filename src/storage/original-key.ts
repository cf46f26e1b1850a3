/**
 * Object keys a caller may name in a search: originals, content-addressed as
 * `images/<first 2 hex of sha256>/<sha256>.<ext>` (so re-uploading the same bytes is harmless), and query
 * images a client dropped under `queries/<name>` (letters, digits, `.`, `_`, `-`).
 */
const ORIGINAL_KEY = /^images\/([0-9a-f]{2})\/([0-9a-f]{64})\.[a-z0-9]{1,5}$/;
const QUERY_KEY = /^queries\/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** Longest key {@link isCallerReadableKey} accepts (characters). */
export const MAX_CALLER_KEY_LENGTH = 108;

/** The key of an original with content hash `sha256` (hex) and file extension `ext` (no dot). */
export const originalKey = (sha256: string, ext: string) => `images/${sha256.slice(0, 2)}/${sha256}.${ext}`;

/**
 * True when a caller may read `key` from the service's bucket: an original's key as {@link originalKey}
 * writes it, or a query image under `queries/`. Anything else (other prefixes, `..`, control characters,
 * other buckets, over {@link MAX_CALLER_KEY_LENGTH} characters) is not.
 */
export function isCallerReadableKey(key: string): boolean {
  if (key.length > MAX_CALLER_KEY_LENGTH || key.includes("..")) return false;
  if (QUERY_KEY.test(key)) return true;
  const m = ORIGINAL_KEY.exec(key);
  return !!m && (m[2] as string).startsWith(m[1] as string);
}
