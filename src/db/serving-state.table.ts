import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  serial,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

/**
 * The columns of an operator's decision in a history table (the matcher flag, the active model): why, who,
 * from which replica, when. A function, so each table gets its own column builders.
 */
export const decisionColumns = () => ({
  /** Why, as given with the mutation (or why it was seeded). */
  reason: text("reason").notNull(),
  /** Who: `admin-token:<first 12 hex of the token's sha256>`, or `config` for the seed. */
  setBy: text("set_by").notNull(),
  /** Replica that answered the mutation. */
  replicaId: text("replica_id").notNull(),
  setAt: timestamp("set_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * The matcher flag's history: one row per switch (and the seed from MATCHER_VERSION). The active matcher
 * is the newest row, so a restart and every replica read the same decision.
 */
export const matcherVersionChanges = pgTable("matcher_version_changes", {
  changeId: serial("change_id").primaryKey(),
  version: text("version", { enum: ["v1", "v2"] }).notNull(),
  ...decisionColumns(),
});

/**
 * One row per index built and published to object storage. The id is the sha256 (hex) of the index's
 * manifest, which holds the checksums of its files: the same id is the same index, on every replica.
 */
export const indexVersions = pgTable(
  "index_versions",
  {
    indexVersionId: text("index_version_id").primaryKey(),
    matcherVersion: text("matcher_version", { enum: ["v1", "v2"] }).notNull(),
    imageType: text("image_type", { enum: ["defect", "normal"] }).notNull(),
    modelId: text("model_id").notNull(),
    factory: text("factory").notNull(),
    count: integer("count").notNull(),
    /** recall@10 of the build's self-check against exact search; null for exact indexes. */
    recallAt10: doublePrecision("recall_at10"),
    galleryFingerprint: text("gallery_fingerprint"),
    /** sha256 (hex) of faiss_index.bin (what `status.indexes[].checksum` shows). */
    indexSha256: text("index_sha256").notNull(),
    /** Key prefix of the artifact's files in the bucket (`index-artifacts/<id>/`). */
    artifactKey: text("artifact_key").notNull(),
    /** sha256 (hex) of the artifact's file list (`artifact.json`, each file's size and sha256). */
    artifactSha256: text("artifact_sha256").notNull(),
    /** Total bytes of the artifact's files. */
    artifactBytes: bigint("artifact_bytes", { mode: "number" }).notNull(),
    builtAt: timestamp("built_at", { withTimezone: true }).notNull(),
    builtBy: text("built_by").notNull(),
    publishedAt: timestamp("published_at", { withTimezone: true }).notNull().defaultNow(),
    /** Set when the retention policy deleted its files from the bucket. */
    deletedAt: timestamp("deleted_at", { withTimezone: true }),
  },
  (t) => [index("index_versions_target_idx").on(t.matcherVersion, t.imageType, t.publishedAt)],
);

/**
 * The index version every replica must serve, per (embedding model, matcher version, image type); flipped
 * in one statement. Every registered model has its own pointers, so a candidate's indexes are followed
 * beside the active model's and a promotion needs no download.
 */
export const activeIndexes = pgTable(
  "active_indexes",
  {
    modelId: text("model_id").notNull(),
    matcherVersion: text("matcher_version", { enum: ["v1", "v2"] }).notNull(),
    imageType: text("image_type", { enum: ["defect", "normal"] }).notNull(),
    indexVersionId: text("index_version_id")
      .notNull()
      .references(() => indexVersions.indexVersionId),
    /** The version it replaced, served for at most READY_GRACE_MS after the flip. */
    previousIndexVersionId: text("previous_index_version_id"),
    activatedAt: timestamp("activated_at", { withTimezone: true }).notNull().defaultNow(),
    activatedBy: text("activated_by").notNull(),
    reason: text("reason").notNull(),
  },
  (t) => [primaryKey({ columns: [t.modelId, t.matcherVersion, t.imageType] })],
);

/** One row per live replica, refreshed by its heartbeat. */
export const replicas = pgTable("replicas", {
  replicaId: text("replica_id").primaryKey(),
  host: text("host").notNull(),
  pid: integer("pid").notNull(),
  startedAt: timestamp("started_at", { withTimezone: true }).notNull(),
  lastSeenAt: timestamp("last_seen_at", { withTimezone: true }).notNull(),
  ready: boolean("ready").notNull(),
  /** `[{ version, imageType, indexVersionId }]` of what it serves. */
  served: jsonb("served").notNull(),
});

/**
 * Rebuild tasks of the whole deployment; pg-boss holds the queue, this table what operators see (progress,
 * outcome, which replica ran it). At most one is open (queued or running) at a time.
 */
export const rebuildTasks = pgTable(
  "rebuild_tasks",
  {
    taskId: text("task_id").primaryKey(),
    /** The pg-boss job carrying it. */
    jobId: text("job_id"),
    targets: jsonb("targets").notNull(),
    trigger: text("trigger", { enum: ["admin", "startup", "compaction", "candidate"] }).notNull(),
    status: text("status", { enum: ["queued", "running", "succeeded", "failed"] }).notNull(),
    current: jsonb("current"),
    progress: jsonb("progress").notNull(),
    /** Replica running it (while running) or that ran it. */
    replicaId: text("replica_id"),
    /** 1 for the first run; a retry after a replica died raises it. */
    attempt: integer("attempt").notNull().default(0),
    requestedBy: text("requested_by").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp("started_at", { withTimezone: true }),
    finishedAt: timestamp("finished_at", { withTimezone: true }),
    durationMs: doublePrecision("duration_ms"),
    error: text("error"),
    failures: jsonb("failures").notNull(),
    results: jsonb("results").notNull(),
  },
  (t) => [
    uniqueIndex("rebuild_tasks_one_open").on(sql`(true)`).where(sql`${t.status} in ('queued', 'running')`),
    index("rebuild_tasks_created_idx").on(t.createdAt),
  ],
);
