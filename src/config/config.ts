import path from "node:path";
import { z } from "zod";
import { MODEL_PRESET_NAMES, MODEL_PRESETS, type ModelPreset } from "./model-presets.js";

const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
const int = (min: number) => z.coerce.number().int().min(min);
const triple = z
  .string()
  .transform((s) => s.split(",").map((x) => Number(x.trim())))
  .pipe(z.tuple([z.number(), z.number(), z.number()]));

/**
 * Every environment variable the service reads, with its description and default.
 * The README's configuration table is generated from the same descriptions.
 */
export const envSchema = z.object({
  NODE_ENV: z
    .enum(["development", "production", "test"])
    .default("development")
    .describe("Runtime mode; stack traces are only returned in development."),
  LOG_LEVEL: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
    .default("info")
    .describe("pino log level."),
  HOST: z.string().default("127.0.0.1").describe("Interface the HTTP server binds to."),
  PORT: int(0)
    .max(65535)
    .default(4000)
    .describe(
      "HTTP port of the web app, GraphQL (/graphql), /healthz, /readyz and /metrics (0 = any free port).",
    ),
  GRAPHIQL: bool
    .optional()
    .describe(
      "Serve the GraphiQL IDE at /graphiql (offline, from npm). Unset: on unless NODE_ENV=production.",
    ),
  DATABASE_URL: z
    .string()
    .optional()
    .describe("PostgreSQL URL. Unset: an embedded PostgreSQL is started in EMBEDDED_DATA_DIR."),
  EMBEDDED_DATA_DIR: z
    .string()
    .default(".data")
    .describe("Folder for the embedded PostgreSQL and S3 server data."),
  EMBEDDED_PG_PORT: int(1).max(65535).default(54329).describe("Port of the embedded PostgreSQL."),
  EMBEDDED_S3_PORT: int(1).max(65535).default(9010).describe("Port of the embedded S3-protocol server."),
  S3_ENDPOINT: z
    .string()
    .url()
    .optional()
    .describe(
      "S3-compatible endpoint URL, e.g. http://127.0.0.1:9000. Unset: an embedded S3 server. Alias: MINIO_ENDPOINT.",
    ),
  S3_ACCESS_KEY: z.string().optional().describe("S3 access key. Alias: MINIO_ACCESS_KEY."),
  S3_SECRET_KEY: z.string().optional().describe("S3 secret key. Alias: MINIO_SECRET_KEY."),
  S3_BUCKET: z
    .string()
    .min(3)
    .default("defect-lens")
    .describe("Bucket holding gallery images; created if missing. Alias: MINIO_BUCKET."),
  S3_REGION: z.string().default("us-east-1").describe("Bucket region (used for signing)."),
  S3_PUBLIC_ENDPOINT: z
    .string()
    .url()
    .optional()
    .describe(
      "Endpoint browsers use for presigned URLs (originals, thumbnails) when they reach object storage under another name than the service does, e.g. https://s3.plant.example. Unset: the service's own endpoint.",
    ),
  PRESIGNED_URL_EXPIRY_SECONDS: int(1)
    .max(604800)
    .default(3600)
    .describe("Lifetime of search results' downloadUrl (seconds)."),
  MODEL_PRESET: z
    .enum(MODEL_PRESET_NAMES)
    .default("mobilenetv2-12-int8")
    .describe(`Embedding model preset: ${MODEL_PRESET_NAMES.join(", ")}.`),
  MODELS_DIR: z
    .string()
    .default("models")
    .describe("Folder holding <preset>/model.onnx; the default model ships in models/mobilenetv2-12-int8/."),
  MODEL_PATH: z
    .string()
    .optional()
    .describe("Path of the ONNX model file; default MODELS_DIR/<preset>/model.onnx."),
  MODEL_URL: z
    .string()
    .url()
    .optional()
    .describe("Where to download the model on first start if MODEL_PATH is missing (needs MODEL_SHA256)."),
  MODEL_SHA256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional()
    .describe(
      "Expected sha256 of the model file; checked at load and after a download. Unset: the shipped default model's own sha256 is checked.",
    ),
  MODEL_INPUT_NAME: z.string().optional().describe("Override the preset's ONNX input name."),
  MODEL_OUTPUT_NAME: z.string().optional().describe("Override the preset's ONNX output name."),
  MODEL_DIMENSION: int(1).optional().describe("Override the preset's embedding dimension."),
  MODEL_INPUT_SIZE: int(8).optional().describe("Override the preset's square input side (pixels)."),
  MODEL_RESIZE_SIZE: int(8)
    .optional()
    .describe("Override the preset's shorter-side resize before the crop (pixels)."),
  MODEL_RESIZE_MODE: z
    .enum(["crop", "fill", "pad"])
    .optional()
    .describe(
      "How a non-square image becomes the square model input: crop (shorter side resized, centre cut), fill (whole image resized to the square, aspect not kept) or pad (whole image letterboxed). Unset: the preset's (fill for the ImageNet presets). Changes the model id: the gallery is re-embedded.",
    ),
  MODEL_TEXTURE_TENSOR: z
    .string()
    .optional()
    .describe(
      "Override the preset's texture tensor (a 4-D tensor inside the ONNX graph whose channel statistics tell defect from normal images); 'none' turns it off.",
    ),
  MODEL_MEAN: triple.optional().describe("Override the preset's RGB mean, e.g. 0.485,0.456,0.406."),
  MODEL_STD: triple.optional().describe("Override the preset's RGB std, e.g. 0.229,0.224,0.225."),
  EMBEDDING_BATCH_SIZE: int(1)
    .max(256)
    .default(16)
    .describe(
      "Images per inference batch during ingestion and rebuilds (with multi-view, views: each batch holds this many views).",
    ),
  ORT_THREADS: int(1)
    .max(64)
    .default(1)
    .describe(
      "onnxruntime intra-op threads per model. 1 on 2 cores: the second thread took CPU from decoding and HTTP work; on bigger hosts add replicas rather than threads (docs/benchmarks.md, threads).",
    ),
  WORKER_THREAD_NICE: int(0)
    .max(19)
    .default(10)
    .describe(
      "Linux scheduling priority (nice) of every thread but the event loop's once the server listens: inference, FAISS, image decoding, V8's helpers. 10 keeps the event loop first under load (event-loop p99 at concurrency 16 halved, throughput unchanged; docs/benchmarks.md); 0 leaves all threads equal.",
    ),
  INFERENCE_MAX_BATCH: int(1)
    .max(256)
    .default(8)
    .describe(
      "Dynamic batching: most images one inference run takes from queries waiting for the model (Triton's max batch size); 1 = every query runs alone. See docs/benchmarks.md for the choice.",
    ),
  INFERENCE_MAX_QUEUE_DELAY_US: int(0)
    .max(1_000_000)
    .default(0)
    .describe(
      "Dynamic batching: microseconds a query may wait for others when the model is idle (Triton's max_queue_delay_microseconds); 0 = an idle model runs it at once, and queries that arrive during a run go together in the next one.",
    ),
  MULTI_VIEW_GRID: int(1)
    .max(4)
    .default(1)
    .describe(
      "Multi-view embeddings: tiles per side cut from a MULTI_VIEW_SIZE resize, embedded with the whole image and pooled (2 = whole + 2x2 tiles); 1 = off (whole image only). Changes the model id: the gallery is re-embedded.",
    ),
  MULTI_VIEW_SIZE: int(8)
    .default(448)
    .describe(
      "Multi-view: side (pixels) of the square resize the tiles (model input size each, evenly overlapping) are cut from.",
    ),
  MULTI_VIEW_POOL: z
    .enum(["mean", "gem"])
    .default("mean")
    .describe("Multi-view: how view embeddings are pooled, mean or gem (generalised mean, p = 3)."),
  INDEX_CACHE_DIR: z.string().default("index-cache").describe("Where persisted FAISS indexes live."),
  INDEX_FACTORY: z
    .string()
    .default("auto")
    .describe(
      "FAISS index factory string (inner product), e.g. Flat or HNSW32,Flat; auto = Flat up to INDEX_AUTO_FLAT_MAX images, INDEX_AUTO_ANN_FACTORY above.",
    ),
  INDEX_AUTO_FLAT_MAX: int(0)
    .default(20_000)
    .describe("With INDEX_FACTORY=auto: galleries up to this many images get exact Flat search."),
  INDEX_AUTO_ANN_FACTORY: z
    .string()
    .default("HNSW16,SQ8")
    .describe(
      "With INDEX_FACTORY=auto: the compressed approximate index for larger galleries (see docs/benchmarks.md for why).",
    ),
  INDEX_EF_CONSTRUCTION: int(1)
    .max(4096)
    .default(80)
    .describe("HNSW efConstruction for HNSW factories (FAISS default 40): graph quality vs build time."),
  INDEX_EF_SEARCH: int(1)
    .max(4096)
    .default(64)
    .describe(
      "HNSW efSearch for HNSW factories (FAISS default 16): recall vs search time; applied at load, no rebuild needed.",
    ),
  FAISS_THREADS: int(1)
    .max(64)
    .default(1)
    .describe(
      "OpenMP and OpenBLAS threads of FAISS searches (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS when those are unset); see docs/benchmarks.md for the choice.",
    ),
  INDEX_BUILD_THREADS: int(1)
    .max(64)
    .default(2)
    .describe(
      "OpenMP threads of an index build (HNSW insertion, SQ/PCA training); searches keep FAISS_THREADS.",
    ),
  INDEX_RECALL_FLOOR: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0.95)
    .describe(
      "Smallest recall@10 against exact search a rebuilt approximate index must reach to be swapped in (measured at every build).",
    ),
  INDEX_RECALL_QUERIES: int(1)
    .max(10_000)
    .default(200)
    .describe("Gallery vectors used as queries (each left out of its own results) by the recall check."),
  STARTUP_REBUILD: z
    .enum(["if-needed", "always", "never"])
    .default("if-needed")
    .describe(
      "At startup: load a persisted index whose manifest matches the model, index type and current gallery and rebuild otherwise (if-needed), always rebuild, or never rebuild (serve what is persisted).",
    ),
  ADAPTED_SPACE: z
    .enum(["on", "off"])
    .default("on")
    .describe(
      "At each V2 rebuild, learn a projection from the gallery's labels and serve it as the adapted space when k-fold cross-validation on the gallery shows it beats raw (overall P@10, and no well-populated class worse); off = raw only.",
    ),
  SEARCH_DEFAULT_SPACE: z
    .enum(["adapted", "raw"])
    .default("adapted")
    .describe(
      "Space a search ranks in when it names none: adapted (used only where the gate accepted a projection, raw elsewhere) or raw.",
    ),
  ADAPT_CV_FOLDS: int(2)
    .max(20)
    .default(5)
    .describe("Folds of the cross-validation that gates the adapted space."),
  ADAPT_MIN_GALLERY: int(2)
    .default(50)
    .describe(
      "Smallest labelled gallery (both image types) the adapted space is learned for; smaller stays raw.",
    ),
  ADAPT_MIN_CLASS_IMAGES: int(1)
    .default(10)
    .describe(
      "Classes with at least this many gallery images must not lose cross-validated P@10 (beyond 0.01) for the adapted space to be served.",
    ),
  QUERY_EXPANSION_TOP_N: int(0)
    .max(50)
    .default(0)
    .describe(
      "alpha-QE (Radenovic et al., TPAMI 2018): search again with the query plus its top N hits weighted by similarity^QUERY_EXPANSION_ALPHA (V2; neighbour embeddings from the database). 0 = off: on the ALL ranking it cost magnetic_tile 0.005 P@10 and moved neu_det and xsdd by at most 0.001, at twice the index-stage time (docs/evaluation.md).",
    ),
  QUERY_EXPANSION_ALPHA: z.coerce
    .number()
    .min(0)
    .max(20)
    .default(3)
    .describe("alpha-QE: exponent of the similarity weights (0 = plain average query expansion)."),
  SUGGESTION_TOP_K: int(1)
    .max(1000)
    .default(10)
    .describe("Top-K hits whose similarity-weighted vote gives the suggested defect type."),
  REPLICA_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,100}$/)
    .optional()
    .describe("This replica's name in status.replicas (default: host name and process id)."),
  STATE_POLL_MS: int(100)
    .default(2000)
    .describe(
      "How often each replica reads the matcher flag and the active index versions from PostgreSQL (ms); NOTIFY wakes it sooner, the poll is the truth.",
    ),
  READY_GRACE_MS: int(0)
    .default(120_000)
    .describe(
      "After an activation, how long a replica still serving the previous index version counts as ready (ms).",
    ),
  REPLICA_STALE_MS: int(1000)
    .default(15_000)
    .describe(
      "A replica whose heartbeat is older than this is dead: its running rebuild is retried elsewhere (ms).",
    ),
  INDEX_VERSIONS_KEPT: int(0)
    .max(100)
    .default(3)
    .describe(
      "Index versions kept in the bucket per index besides the active and the previous one, for rollback; older ones are deleted.",
    ),
  REBUILD_RETRIES: int(0)
    .max(10)
    .default(2)
    .describe("Retries of a rebuild whose replica died mid-way, before it fails."),
  REBUILD_TIMEOUT_MINUTES: int(1)
    .max(1400)
    .default(240)
    .describe(
      "A rebuild still running after this long is failed and retried (a backstop for hung replicas).",
    ),
  REBUILD_WORKER: bool
    .default(true)
    .describe("Whether this replica runs rebuilds (every replica can request them)."),
  GALLERY_COMPACTION_SHARE: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0.1)
    .describe(
      "Gallery changes served beside an index since its build (added plus removed or relabelled images), as a share of it, at which a rebuild folds them in and refits the adapted space.",
    ),
  GALLERY_COMPACTION_MIN: int(1)
    .default(100)
    .describe("Pending gallery changes below which an index is never rebuilt for them (small galleries)."),
  GALLERY_COMPACTION_MAX: int(1)
    .default(5000)
    .describe(
      "Pending gallery changes at which an index is always rebuilt (they are searched exactly, beside it).",
    ),
  MODEL_REEMBED_SHARE: z.coerce
    .number()
    .gt(0)
    .max(1)
    .default(0.25)
    .describe(
      "Candidate models: the share of wall time the gallery's re-embedding may keep its inference worker busy (it sleeps the rest), so searches on the active model keep their latency (measured: search p50 +8% at 0.25, +33% at 0.5, +68% unthrottled, under a saturating load); 1 = unthrottled. See docs/models.md.",
    ),
  MODEL_SHADOW_SHARE: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0.1)
    .describe(
      "Candidate models: the share of live searches also ranked by the candidate, off the request's path (shadow traffic), to compare overlap@10 and agreement; 0 = off.",
    ),
  MODEL_COMPARE_QUERIES: int(10)
    .max(100_000)
    .default(500)
    .describe(
      "Candidate models: gallery images (at most) that query the rest of the gallery in the labelled comparison of two models (leave-one-out P@10 and suggestion accuracy).",
    ),
  GALLERY_ADD_MAX_IMAGES: int(1)
    .max(1000)
    .default(32)
    .describe("Images one addGalleryImages call may carry."),
  NEAR_DUPLICATE_SIMILARITY: z.coerce
    .number()
    .min(-1)
    .max(1)
    .optional()
    .describe(
      "Cosine similarity (raw embedding) to the nearest gallery image at which a new image is reported as a near-duplicate; default per model preset, calibrated in docs/near-duplicates.md.",
    ),
  NEAR_DUPLICATE_HASH_DISTANCE: int(-1)
    .max(64)
    .default(6)
    .describe(
      "Perceptual-hash (pHash) Hamming distance, of 64 bits, at which one of a new image's 5 nearest gallery images is a near-duplicate (a resized or recompressed copy); -1 turns the hash check off.",
    ),
  MATCHER_VERSION: z
    .enum(["v1", "v2"])
    .optional()
    .describe("Active matcher at startup (default v2). Switchable at runtime by setMatcherVersion."),
  USE_INDEX_V2: bool
    .optional()
    .describe("Legacy flag of the old system: true = v2, false = v1. MATCHER_VERSION wins if both are set."),
  V1_GALLERY_DIR: z
    .string()
    .optional()
    .describe(
      "Folder of {product}_{defect}_*.{jpg,png} files for the V1 matcher; unset = V1 has no gallery.",
    ),
  SAMPLE_DIR: z
    .string()
    .default("samples/xsdd")
    .describe(
      "Shipped sample: gallery/ (imported by `npm start -- --with-sample-gallery`) and held-back/ query images, each <product>/<defect>/<files>.",
    ),
  ADMIN_TOKEN: z
    .string()
    .min(16)
    .optional()
    .describe(
      "Bearer token for admin operations (rebuildIndex, setMatcherVersion). Unset: admin operations are refused.",
    ),
  MAX_IMAGE_BYTES: int(1)
    .default(10 * 1024 * 1024)
    .describe("Largest accepted query image (bytes)."),
  MAX_IMAGE_PIXELS: int(1)
    .default(40_000_000)
    .describe("Largest accepted width x height (pixels); bigger is refused before decoding."),
  MAX_TOP_K: int(1).max(1000).default(100).describe("Upper bound of searchSimilar's topK."),
  MIN_IMAGE_SIDE: int(1)
    .max(4096)
    .default(32)
    .describe("Shortest accepted image side (pixels); smaller images are refused with IMAGE_TOO_SMALL."),
  DB_QUERY_TIMEOUT_MS: int(100)
    .default(15_000)
    .describe("Longest one PostgreSQL statement may run (statement_timeout; the client gives up 1 s later)."),
  S3_REQUEST_TIMEOUT_MS: int(100)
    .default(15_000)
    .describe("Longest one object-storage request (stat, get with its body, put) may take."),
  // 16 keeps both cores busy on 2: a search spends its time in stages on different threads (decoding on
  // libuv's pool, the model in its worker, FAISS in its own), and the inference worker's dynamic batch can
  // only gather what is admitted. Measured against 4, 6, 8, 12 and 32 in docs/benchmarks.md.
  SEARCH_CONCURRENCY: int(1)
    .max(256)
    .default(16)
    .describe(
      "Searches processed at once (fetch, decode, inference, FAISS); more wait in the admission queue. Twice INFERENCE_MAX_BATCH lets one batch gather while another runs.",
    ),
  SEARCH_QUEUE_LIMIT: int(0)
    .max(100_000)
    .default(32)
    .describe(
      "Searches that may wait for a slot; beyond it a search is refused at once with OVERLOADED (HTTP 503, Retry-After).",
    ),
  REQUEST_DEADLINE_MS: int(100)
    .default(30_000)
    .describe("Longest a search may take from arrival (queue included) to answer; then SERVICE_UNAVAILABLE."),
  MAX_SEARCHES_PER_OPERATION: int(1)
    .max(100)
    .default(1)
    .describe("searchSimilar fields allowed in one GraphQL operation (aliases included)."),
  GRAPHQL_MAX_ALIASES: int(1).max(1000).default(15).describe("Aliases allowed in one GraphQL operation."),
  GRAPHQL_MAX_DEPTH: int(2)
    .max(100)
    .default(10)
    .describe("Deepest selection allowed in one GraphQL operation."),
});

/** The raw, validated environment. */
export type Env = z.infer<typeof envSchema>;

/** How an image is cut into views for multi-view embeddings (`src/embedding/multi-view.ts`). */
export interface ViewSettings {
  /** Tiles per side (1 = off: the whole image only; 2 = whole image + 2 x 2 tiles; 3 = + 3 x 3). */
  readonly grid: number;
  /** Side (pixels) of the square resize the tiles are cut from; tiles are the model's input size each. */
  readonly size: number;
  /** How view embeddings are combined: `mean` of the unit vectors, or `gem` (generalised mean, p = 3). */
  readonly pool: "mean" | "gem";
}

/** One view only (multi-view off): the whole image, as every model id before multi-view. */
export const SINGLE_VIEW: ViewSettings = { grid: 1, size: 224, pool: "mean" };

/** A fully resolved model configuration: a preset with overrides applied and a path. */
export interface ModelConfig extends ModelPreset {
  /** Absolute path of the ONNX file. */
  readonly path: string;
  /** The texture tensor was set explicitly (MODEL_TEXTURE_TENSOR): loading fails when it is missing. */
  readonly textureRequired: boolean;
  readonly downloadUrl: string | undefined;
  /** Expected sha256 (hex) of the file: MODEL_SHA256, else the shipped file's when loaded from MODELS_DIR. */
  readonly sha256: string | undefined;
  /** Where `sha256` comes from, for the error message of a mismatch. */
  readonly sha256Source: "MODEL_SHA256" | "shipped" | undefined;
  readonly batchSize: number;
  readonly threads: number;
  /** Dynamic batching of concurrent queries in the inference worker. */
  readonly dynamicBatching: { readonly maxBatch: number; readonly maxQueueDelayUs: number };
  /** Multi-view settings; {@link SINGLE_VIEW} when off. */
  readonly views: ViewSettings;
}

/** The service configuration, parsed once at startup and passed down: the shape {@link loadConfig} builds. */
export type AppConfig = ReturnType<typeof buildConfig>;

/** Thrown when the environment does not validate; `issues` lists every problem at once. */
export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`Invalid configuration:\n${issues.map((i) => `  - ${i}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/**
 * Parses the environment into an {@link AppConfig}.
 * @param source - variables to read (normally `process.env`).
 * @throws {ConfigError} listing every invalid variable.
 */
export function loadConfig(source: Record<string, string | undefined> = process.env): AppConfig {
  const withAliases = {
    ...source,
    S3_ENDPOINT: source.S3_ENDPOINT ?? source.MINIO_ENDPOINT,
    S3_ACCESS_KEY: source.S3_ACCESS_KEY ?? source.MINIO_ACCESS_KEY,
    S3_SECRET_KEY: source.S3_SECRET_KEY ?? source.MINIO_SECRET_KEY,
    S3_BUCKET: source.S3_BUCKET ?? source.MINIO_BUCKET,
  };
  // Empty strings mean "unset", as in most .env tooling.
  const cleaned = Object.fromEntries(
    Object.entries(withAliases).filter(([, v]) => v !== undefined && v !== ""),
  );
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`));
  }
  const env = parsed.data;
  const issues: string[] = [];
  if (env.S3_ENDPOINT && (!env.S3_ACCESS_KEY || !env.S3_SECRET_KEY)) {
    issues.push("S3_ACCESS_KEY and S3_SECRET_KEY are required when S3_ENDPOINT is set");
  }
  if (env.MODEL_URL && !env.MODEL_SHA256) issues.push("MODEL_SHA256 is required when MODEL_URL is set");
  const inputSize = modelInputSize(env);
  if (
    env.MULTI_VIEW_GRID > 1 &&
    (env.MULTI_VIEW_SIZE < inputSize || env.MULTI_VIEW_GRID * inputSize < env.MULTI_VIEW_SIZE)
  ) {
    issues.push(
      `MULTI_VIEW_SIZE ${env.MULTI_VIEW_SIZE} must lie between the input size ${inputSize} and MULTI_VIEW_GRID x input size ${env.MULTI_VIEW_GRID * inputSize}, so the tiles cover it`,
    );
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return buildConfig(env);
}

/** The model's square input side: MODEL_INPUT_SIZE, else the preset's. */
function modelInputSize(env: Env): number {
  return env.MODEL_INPUT_SIZE ?? MODEL_PRESETS[env.MODEL_PRESET].inputSize;
}

/** The configuration of a validated environment; its result type is {@link AppConfig}. */
function buildConfig(env: Env) {
  const preset = MODEL_PRESETS[env.MODEL_PRESET];
  const modelPath = path.resolve(env.MODEL_PATH ?? path.join(env.MODELS_DIR, preset.name, "model.onnx"));
  // The shipped file's checksum holds for MODELS_DIR/<preset>/model.onnx; MODEL_PATH names another file.
  const shippedSha256 =
    env.MODEL_PATH === undefined && "shippedSha256" in preset ? preset.shippedSha256 : undefined;
  const model: ModelConfig = {
    ...preset,
    inputName: env.MODEL_INPUT_NAME ?? preset.inputName,
    outputName: env.MODEL_OUTPUT_NAME ?? preset.outputName,
    dimension: env.MODEL_DIMENSION ?? preset.dimension,
    inputSize: modelInputSize(env),
    resizeShorterSide: env.MODEL_RESIZE_SIZE ?? preset.resizeShorterSide,
    textureTensor:
      env.MODEL_TEXTURE_TENSOR === "none"
        ? undefined
        : (env.MODEL_TEXTURE_TENSOR ?? (preset as ModelPreset).textureTensor),
    textureRequired: env.MODEL_TEXTURE_TENSOR !== undefined && env.MODEL_TEXTURE_TENSOR !== "none",
    resizeMode: env.MODEL_RESIZE_MODE ?? (preset as ModelPreset).resizeMode ?? "crop",
    mean: env.MODEL_MEAN ?? preset.mean,
    std: env.MODEL_STD ?? preset.std,
    path: modelPath,
    downloadUrl: env.MODEL_URL,
    sha256: env.MODEL_SHA256 ?? shippedSha256,
    sha256Source: env.MODEL_SHA256 ? "MODEL_SHA256" : shippedSha256 ? "shipped" : undefined,
    batchSize: env.EMBEDDING_BATCH_SIZE,
    threads: env.ORT_THREADS,
    dynamicBatching: {
      maxBatch: env.INFERENCE_MAX_BATCH,
      maxQueueDelayUs: env.INFERENCE_MAX_QUEUE_DELAY_US,
    },
    views:
      env.MULTI_VIEW_GRID > 1
        ? { grid: env.MULTI_VIEW_GRID, size: env.MULTI_VIEW_SIZE, pool: env.MULTI_VIEW_POOL }
        : SINGLE_VIEW,
  };
  const initialVersion: "v1" | "v2" =
    env.MATCHER_VERSION ?? (env.USE_INDEX_V2 === undefined ? "v2" : env.USE_INDEX_V2 ? "v2" : "v1");
  // Servers' alternatives come from functions, so the inferred unions keep their members apart: a union of
  // inline object literals would gain the other member's fields as optional `undefined` ones.
  const externalDatabase = (url: string) => ({ kind: "external", url }) as const;
  const externalS3 = (endpoint: string, accessKey: string, secretKey: string) =>
    ({ kind: "external", endpoint, accessKey, secretKey }) as const;
  const embedded = (folder: string, port: number) =>
    ({ kind: "embedded", dataDir: path.resolve(env.EMBEDDED_DATA_DIR, folder), port }) as const;

  return {
    env: env.NODE_ENV,
    logLevel: env.LOG_LEVEL,
    http: { host: env.HOST, port: env.PORT, graphiql: env.GRAPHIQL ?? env.NODE_ENV !== "production" },
    /** Linux nice (0-19) of every thread but the event loop's; 0: all equal. */
    workerThreadNice: env.WORKER_THREAD_NICE,
    database: env.DATABASE_URL
      ? externalDatabase(env.DATABASE_URL)
      : embedded("postgres", env.EMBEDDED_PG_PORT),
    storage: {
      server:
        env.S3_ENDPOINT && env.S3_ACCESS_KEY && env.S3_SECRET_KEY
          ? externalS3(env.S3_ENDPOINT, env.S3_ACCESS_KEY, env.S3_SECRET_KEY)
          : embedded("s3", env.EMBEDDED_S3_PORT),
      bucket: env.S3_BUCKET,
      region: env.S3_REGION,
      presignExpirySeconds: env.PRESIGNED_URL_EXPIRY_SECONDS,
      /** Endpoint presigned URLs name, when browsers reach object storage under another name. */
      publicEndpoint: env.S3_PUBLIC_ENDPOINT,
    },
    model,
    index: {
      cacheDir: path.resolve(env.INDEX_CACHE_DIR),
      factory: env.INDEX_FACTORY,
      auto: { flatMaxVectors: env.INDEX_AUTO_FLAT_MAX, annFactory: env.INDEX_AUTO_ANN_FACTORY },
      efConstruction: env.INDEX_EF_CONSTRUCTION,
      efSearch: env.INDEX_EF_SEARCH,
      recallFloor: env.INDEX_RECALL_FLOOR,
      recallQueries: env.INDEX_RECALL_QUERIES,
      /** OpenMP/OpenBLAS threads of FAISS searches. */
      threads: env.FAISS_THREADS,
      /** OpenMP threads of an index build. */
      buildThreads: env.INDEX_BUILD_THREADS,
      startupRebuild: env.STARTUP_REBUILD,
    },
    adaptation: {
      enabled: env.ADAPTED_SPACE === "on",
      defaultSpace: env.SEARCH_DEFAULT_SPACE,
      folds: env.ADAPT_CV_FOLDS,
      minGallery: env.ADAPT_MIN_GALLERY,
      minClassImages: env.ADAPT_MIN_CLASS_IMAGES,
      suggestionTopK: env.SUGGESTION_TOP_K,
      /** alpha-QE: hits the query is expanded with (0 = off) and the weight exponent. */
      queryExpansion: { topN: env.QUERY_EXPANSION_TOP_N, alpha: env.QUERY_EXPANSION_ALPHA },
    },
    matcher: {
      initialVersion,
      v1GalleryDir: env.V1_GALLERY_DIR ? path.resolve(env.V1_GALLERY_DIR) : undefined,
    },
    /** This process as a replica of the deployment (see `src/deployment/replica.ts`). */
    replica: {
      replicaId: env.REPLICA_ID,
      pollMs: env.STATE_POLL_MS,
      graceMs: env.READY_GRACE_MS,
      staleMs: env.REPLICA_STALE_MS,
      keepVersions: env.INDEX_VERSIONS_KEPT,
    },
    rebuild: {
      retries: env.REBUILD_RETRIES,
      timeoutMinutes: env.REBUILD_TIMEOUT_MINUTES,
      work: env.REBUILD_WORKER,
    },
    /** Editing the gallery through the API: compaction of the changes served beside the indexes, limits. */
    gallery: {
      compaction: {
        share: env.GALLERY_COMPACTION_SHARE,
        minChanges: env.GALLERY_COMPACTION_MIN,
        maxChanges: env.GALLERY_COMPACTION_MAX,
      },
      addMaxImages: env.GALLERY_ADD_MAX_IMAGES,
      /** Cosine similarity at which a new image is a near-duplicate of its nearest gallery image. */
      nearDuplicateSimilarity: env.NEAR_DUPLICATE_SIMILARITY ?? preset.nearDuplicateSimilarity,
      /** pHash Hamming distance (of 64 bits) at which a near neighbour is a near-duplicate; -1: off. */
      nearDuplicateHashDistance: env.NEAR_DUPLICATE_HASH_DISTANCE,
    },
    /** Registered embedding models: where presets' files are, and the candidate's preparation and comparison. */
    models: {
      /** MODELS_DIR, absolute: `<preset>/model.onnx` of a model registered by preset name. */
      dir: path.resolve(env.MODELS_DIR),
      /** Share (0-1] of wall time a candidate's re-embedding may keep its inference worker busy. */
      reembedShare: env.MODEL_REEMBED_SHARE,
      /** Share [0-1] of live searches also ranked by the candidate (shadow traffic). */
      shadowShare: env.MODEL_SHADOW_SHARE,
      /** Gallery images querying the rest in the labelled comparison. */
      compareQueries: env.MODEL_COMPARE_QUERIES,
    },
    /** The shipped sample: images to import as a gallery, and held-back query images (absolute folders). */
    sample: {
      galleryDir: path.resolve(env.SAMPLE_DIR, "gallery"),
      heldBackDir: path.resolve(env.SAMPLE_DIR, "held-back"),
    },
    adminToken: env.ADMIN_TOKEN,
    limits: {
      maxImageBytes: env.MAX_IMAGE_BYTES,
      maxImagePixels: env.MAX_IMAGE_PIXELS,
      minImageSide: env.MIN_IMAGE_SIDE,
      maxTopK: env.MAX_TOP_K,
      /** Searches running at once before the next waits for a slot. */
      searchConcurrency: env.SEARCH_CONCURRENCY,
      /** Searches that may wait for a slot before OVERLOADED. */
      searchQueueLimit: env.SEARCH_QUEUE_LIMIT,
      /** Longest a search may take from arrival to answer (ms). */
      requestDeadlineMs: env.REQUEST_DEADLINE_MS,
      maxSearchesPerOperation: env.MAX_SEARCHES_PER_OPERATION,
      maxAliases: env.GRAPHQL_MAX_ALIASES,
      maxDepth: env.GRAPHQL_MAX_DEPTH,
      /** Longest PostgreSQL statement (ms). */
      dbQueryTimeoutMs: env.DB_QUERY_TIMEOUT_MS,
      /** Longest object-storage request (ms). */
      s3RequestTimeoutMs: env.S3_REQUEST_TIMEOUT_MS,
    },
  } as const;
}
