import { createWriteStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { Presets, SingleBar } from "cli-progress";
import { type Command, InvalidArgumentError, Option } from "commander";
import { ConfigError } from "../config/config.js";
import { defaultGraphqlUrl } from "../config/search-client.config.js";

/**
 * File extensions searched when walking a folder (lower case, with the dot): the formats the service
 * decodes. A file with one of them that is not an image is still sent, and fails as the service says.
 */
export const QUERY_IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  ".jpg",
  ".jpeg",
  ".png",
  ".webp",
  ".tif",
  ".tiff",
  ".gif",
  ".avif",
]);

/** Gallery selector of `searchSimilar` (schema.graphql `ImageTypeSelector`). */
export type ImageTypeSelector = "DEFECT" | "NORMAL" | "ALL";

/** One gallery image of a search answer, as the CLI asks for it. */
export interface SearchHitRow {
  /** 1-based rank. */
  rank: number;
  /** Cosine similarity in the space that ranked the hit, in [-1, 1]. */
  score: number;
  imageId: string | null;
  productCode: string;
  /** Null for normal images. */
  defectCode: string | null;
  /** Stable `s3://bucket/key` URL of the original (V2). */
  storageUrl: string | null;
  /** Presigned HTTP GET URL of the original, valid for the service's configured expiry (V2). */
  downloadUrl: string | null;
}

/** The service's similarity-weighted vote of the top hits for one query image. */
export interface SearchSuggestion {
  productCode: string;
  /** Null when the vote says normal. */
  defectCode: string | null;
  /** Share of the vote's weight, 0 to 1. */
  share: number;
  /** Hits that voted. */
  votes: number;
}

/** What one query image got: its hits and suggestion, or the error that stopped it. */
export type QueryOutcome =
  | { queryFile: string; ok: true; hits: SearchHitRow[]; suggestion: SearchSuggestion | null }
  | {
      queryFile: string;
      ok: false;
      /** The GraphQL error's message, or the HTTP/network failure. */
      message: string;
      /** The GraphQL error's `extensions.code`; `HTTP_<status>`, `NETWORK_ERROR` or `READ_ERROR` otherwise. */
      code: string;
    };

/** One output row: a (query image, rank) pair with the query's suggestion repeated on it. */
export interface SearchResultRow extends SearchHitRow {
  queryFile: string;
  suggestedProductCode: string | null;
  suggestedDefectCode: string | null;
  suggestionShare: number | null;
}

const SEARCH_QUERY = /* GraphQL */ `
  query CliSearch($input: SearchSimilarInput!) {
    searchSimilar(input: $input) {
      suggestion { productCode defectCode share votes }
      hits { rank score imageId productCode defectCode storageUrl downloadUrl }
    }
  }
`;

interface GraphqlAnswer {
  data?: { searchSimilar?: { hits: SearchHitRow[]; suggestion: SearchSuggestion | null } | null } | null;
  errors?: { message?: string; extensions?: { code?: unknown } }[];
}

/**
 * The query images named by `inputs`: every file given explicitly (whatever its extension), and the files
 * with an image extension ({@link QUERY_IMAGE_EXTENSIONS}, any case) found by walking each folder
 * recursively. Paths keep the form they were given in (relative stays relative); duplicates are dropped;
 * folder contents are sorted by path.
 * @throws Error when an input does not exist or cannot be read.
 */
export async function collectQueryImages(inputs: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    );
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && QUERY_IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase())) found.push(p);
    }
  };
  for (const input of inputs) {
    if ((await stat(input)).isDirectory()) await walk(input);
    else found.push(input);
  }
  return [...new Set(found)];
}

/** Longest wait before a retry of an OVERLOADED answer, whatever `Retry-After` says (ms). */
const MAX_RETRY_WAIT_MS = 10_000;

/**
 * Searches the gallery with one query image through `searchSimilar`, as a GraphQL multipart request
 * (the file as a part, header `Apollo-Require-Preflight: true`). An `OVERLOADED` answer (HTTP 503, the
 * service shedding load) is retried up to `retries` times after its `Retry-After` (at most 10 s); nothing
 * else is retried, since every other error would come back the same.
 * @param url - the service's GraphQL endpoint, e.g. `http://127.0.0.1:4000/graphql`.
 * @param topK - hits to ask for (the service accepts 1 to its configured maximum).
 * @param timeoutMs - abort each request after this many milliseconds.
 * @returns the hits and suggestion, or a failure; never throws for a bad file, an HTTP or GraphQL error.
 */
export async function searchQueryImage({
  url,
  queryFile,
  topK,
  imageType,
  timeoutMs,
  retries = 2,
}: {
  url: string;
  queryFile: string;
  topK: number;
  imageType: ImageTypeSelector;
  timeoutMs: number;
  retries?: number;
}): Promise<QueryOutcome> {
  let bytes: Buffer;
  try {
    bytes = await readFile(queryFile);
  } catch (e) {
    return { queryFile, ok: false, message: (e as Error).message, code: "READ_ERROR" };
  }
  for (let attempt = 0; ; attempt++) {
    const { outcome, retryAfterMs } = await searchOnce({ url, queryFile, bytes, topK, imageType, timeoutMs });
    if (outcome.ok || outcome.code !== "OVERLOADED" || attempt >= retries) return outcome;
    await new Promise((resolve) => setTimeout(resolve, Math.min(retryAfterMs, MAX_RETRY_WAIT_MS)));
  }
}

/** One request of {@link searchQueryImage}, with the wait the service asked for (`Retry-After`, ms; 1 s without). */
async function searchOnce({
  url,
  queryFile,
  bytes,
  topK,
  imageType,
  timeoutMs,
}: {
  url: string;
  queryFile: string;
  bytes: Buffer;
  topK: number;
  imageType: ImageTypeSelector;
  timeoutMs: number;
}): Promise<{ outcome: QueryOutcome; retryAfterMs: number }> {
  let retryAfterMs = 1000;
  const fail = (message: string, code: string) => ({
    outcome: { queryFile, ok: false, message, code } satisfies QueryOutcome,
    retryAfterMs,
  });
  const form = new FormData();
  form.append(
    "operations",
    JSON.stringify({ query: SEARCH_QUERY, variables: { input: { image: { file: null }, topK, imageType } } }),
  );
  form.append("map", JSON.stringify({ 0: ["variables.input.image.file"] }));
  form.append("0", new Blob([new Uint8Array(bytes)]), path.basename(queryFile));
  let res: Response;
  let body: string;
  try {
    res = await fetch(url, {
      method: "POST",
      body: form,
      headers: { "apollo-require-preflight": "true" },
      signal: AbortSignal.timeout(timeoutMs),
    });
    body = await res.text();
    const seconds = Number(res.headers.get("retry-after"));
    if (Number.isFinite(seconds) && seconds >= 0) retryAfterMs = seconds * 1000;
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const detail = err.cause?.message ?? err.message;
    return fail(
      err.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : `${err.message}: ${detail}`,
      err.name === "TimeoutError" ? "TIMEOUT" : (err.cause?.code ?? "NETWORK_ERROR"),
    );
  }
  let answer: GraphqlAnswer;
  try {
    answer = JSON.parse(body) as GraphqlAnswer;
  } catch {
    return fail(`HTTP ${res.status}: ${body.slice(0, 200)}`, `HTTP_${res.status}`);
  }
  const first = answer.errors?.[0];
  if (first) {
    const code = typeof first.extensions?.code === "string" ? first.extensions.code : `HTTP_${res.status}`;
    return fail(first.message ?? "unknown GraphQL error", code);
  }
  const result = answer.data?.searchSimilar;
  if (!result) return fail(`HTTP ${res.status}: no searchSimilar in the answer`, `HTTP_${res.status}`);
  return { outcome: { queryFile, ok: true, hits: result.hits, suggestion: result.suggestion }, retryAfterMs };
}

/**
 * Runs `work` over `items` with at most `concurrency` calls in flight.
 * @returns the results in the order of `items`.
 */
async function mapConcurrent<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < items.length; i = next++) results[i] = await work(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
  return results;
}

/** One row per (query image, rank) of the successful outcomes, in query then rank order. */
export function toResultRows(outcomes: readonly QueryOutcome[]): SearchResultRow[] {
  return outcomes.flatMap((o) =>
    o.ok
      ? o.hits.map((h) => ({
          queryFile: o.queryFile,
          rank: h.rank,
          score: h.score,
          imageId: h.imageId,
          productCode: h.productCode,
          defectCode: h.defectCode,
          storageUrl: h.storageUrl,
          downloadUrl: h.downloadUrl,
          suggestedProductCode: o.suggestion?.productCode ?? null,
          suggestedDefectCode: o.suggestion?.defectCode ?? null,
          suggestionShare: o.suggestion?.share ?? null,
        }))
      : [],
  );
}

/** CSV columns, in order; snake_case headers of {@link SearchResultRow}'s fields. */
export const CSV_COLUMNS = [
  ["query_file", "queryFile"],
  ["rank", "rank"],
  ["score", "score"],
  ["image_id", "imageId"],
  ["product_code", "productCode"],
  ["defect_code", "defectCode"],
  ["storage_url", "storageUrl"],
  ["download_url", "downloadUrl"],
  ["suggested_product_code", "suggestedProductCode"],
  ["suggested_defect_code", "suggestedDefectCode"],
  ["suggestion_share", "suggestionShare"],
] as const satisfies readonly (readonly [string, keyof SearchResultRow])[];

/** RFC 4180 field: quoted when it holds a comma, quote or line break; null is empty. */
const csvField = (v: string | number | null): string => {
  const s = v === null ? "" : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

/** The rows as CSV (header line first, CRLF-free `\n` line ends, empty fields for null). */
export function formatCsv(rows: readonly SearchResultRow[]): string {
  const lines = [CSV_COLUMNS.map(([h]) => h).join(",")];
  for (const r of rows) lines.push(CSV_COLUMNS.map(([, k]) => csvField(r[k])).join(","));
  return `${lines.join("\n")}\n`;
}

/**
 * The outcomes as one JSON document: `rows` (one per query image and rank, the CSV's fields in camelCase
 * without the suggestion columns), `suggestions` (one per successful query image, null when it had no hits)
 * and `failures` (file, message, code).
 */
export function formatJson(outcomes: readonly QueryOutcome[]): string {
  const rows = toResultRows(outcomes).map(
    ({ suggestedProductCode, suggestedDefectCode, suggestionShare, ...row }) => row,
  );
  const suggestions = outcomes.flatMap((o) =>
    o.ok ? [{ queryFile: o.queryFile, suggestion: o.suggestion }] : [],
  );
  const failures = outcomes.flatMap((o) =>
    o.ok ? [] : [{ queryFile: o.queryFile, message: o.message, code: o.code }],
  );
  return `${JSON.stringify({ rows, suggestions, failures }, null, 2)}\n`;
}

/** Options of {@link runSearch}, as the `search` subcommand parses them. */
export interface SearchOptions {
  /** Hits per query image. */
  topK: number;
  format: "csv" | "json";
  /** Output file; standard output when unset. */
  out?: string | undefined;
  /** GraphQL endpoint; the configured default when unset. */
  url?: string | undefined;
  imageType: ImageTypeSelector;
  /** Requests in flight at once. */
  concurrency: number;
  /** Per-request timeout (ms). */
  timeoutMs: number;
  /** Retries of an OVERLOADED answer per query image. */
  retries: number;
}

/**
 * Searches every query image of `inputs` and writes the results (CSV or JSON) to `out` or standard
 * output, with a progress bar and the failures on standard error.
 * @returns the exit code: 0 when every query image was searched, 1 when one failed, none was found, the
 *   results could not be written, or the configuration is invalid.
 */
export async function runSearch(inputs: readonly string[], options: SearchOptions): Promise<number> {
  let url: string;
  try {
    url = options.url ?? defaultGraphqlUrl();
  } catch (e) {
    console.error(e instanceof ConfigError ? e.message : e);
    return 1;
  }
  let files: string[];
  try {
    files = await collectQueryImages(inputs);
  } catch (e) {
    console.error(`search: ${(e as Error).message}`);
    return 1;
  }
  if (files.length === 0) {
    console.error(
      `search: no image files (${[...QUERY_IMAGE_EXTENSIONS].join(", ")}) in ${inputs.join(", ")}`,
    );
    return 1;
  }
  const bar = new SingleBar(
    { format: "search [{bar}] {value}/{total} | failed {failed} | {eta_formatted}", stream: process.stderr },
    Presets.legacy,
  );
  bar.start(files.length, 0, { failed: 0 });
  let failed = 0;
  const outcomes = await mapConcurrent(files, options.concurrency, async (queryFile) => {
    const o = await searchQueryImage({
      url,
      queryFile,
      topK: options.topK,
      imageType: options.imageType,
      timeoutMs: options.timeoutMs,
      retries: options.retries,
    });
    if (!o.ok) failed++;
    bar.increment(1, { failed });
    return o;
  });
  bar.stop();

  const text = options.format === "json" ? formatJson(outcomes) : formatCsv(toResultRows(outcomes));
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = options.out ? createWriteStream(options.out) : process.stdout;
      stream.once("error", reject);
      if (options.out) stream.end(text, () => resolve());
      else stream.write(text, () => resolve());
    });
  } catch (e) {
    console.error(`search: cannot write the results: ${(e as Error).message}`);
    return 1;
  }
  const failures = outcomes.filter((o) => !o.ok);
  console.error(
    `searched ${files.length} query images at ${url}: ${files.length - failures.length} ok, ${failures.length} failed` +
      (options.out ? `; results in ${options.out}` : ""),
  );
  for (const f of failures) console.error(`  failed: ${f.queryFile}: ${f.message} (${f.code})`);
  return failures.length > 0 ? 1 : 0;
}

/** A commander parser for an integer in [min, max]. */
const intIn = (min: number, max: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
  }
  return n;
};

/**
 * Adds the `search` subcommand to `program`: `search <folder or files...> [--top-k N] [--format csv|json]
 * [--out file] [--url url] [--image-type DEFECT|NORMAL|ALL] [--concurrency N] [--retries N] [--timeout-ms N]`. It sets
 * `process.exitCode` to {@link runSearch}'s result.
 */
export function addSearchCommand(program: Command): Command {
  return program
    .command("search")
    .description(
      "Search the gallery of a running service with every query image of the given folders (recursively) and files; " +
        "one row per (query image, rank).",
    )
    .argument("<inputs...>", "folders (searched recursively for image files) or image files")
    .addOption(new Option("--top-k <n>", "hits per query image").argParser(intIn(1, 10_000)).default(5))
    .addOption(new Option("--format <format>", "output format").choices(["csv", "json"]).default("csv"))
    .option("--out <file>", "write the results to this file instead of standard output")
    .option("--url <url>", "GraphQL endpoint (default DEFECT_LENS_URL, else http://HOST:PORT/graphql)")
    .addOption(
      new Option("--image-type <type>", "gallery to search")
        .choices(["DEFECT", "NORMAL", "ALL"])
        .default("DEFECT"),
    )
    .addOption(
      new Option("--concurrency <n>", "requests in flight at once").argParser(intIn(1, 16)).default(3),
    )
    .addOption(
      new Option("--retries <n>", "retries of an OVERLOADED answer (after its Retry-After)")
        .argParser(intIn(0, 10))
        .default(2),
    )
    .addOption(
      new Option("--timeout-ms <ms>", "per-request timeout").argParser(intIn(1, 3_600_000)).default(60_000),
    )
    .action(async (inputs: string[], opts: SearchOptions) => {
      process.exitCode = await runSearch(inputs, opts);
    });
}
