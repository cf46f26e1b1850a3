import {
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  serial,
  text,
  timestamp,
} from "drizzle-orm/pg-core";
import { decisionColumns } from "./serving-state.table.js";

/**
 * Embedding models registered with the deployment, by model id (file sha256 + preprocessing, as
 * `loadEmbeddingModel` names them). `spec` is the resolved model configuration every replica loads the same
 * way; a retired model's embeddings and indexes are deleted and its row kept for the history.
 */
export const embeddingModels = pgTable("embedding_models", {
  modelId: text("model_id").primaryKey(),
  /** The resolved model configuration (preset, path, sha256, preprocessing), without per-process settings. */
  spec: jsonb("spec").notNull(),
  /** Embedding length (elements). */
  dimension: integer("dimension").notNull(),
  registeredAt: timestamp("registered_at", { withTimezone: true }).notNull().defaultNow(),
  /** `admin-token:<12 hex>`, or `config` for the model a deployment started with. */
  registeredBy: text("registered_by").notNull(),
  retiredAt: timestamp("retired_at", { withTimezone: true }),
});

/**
 * Which model ranks the deployment's searches: one row per promotion (and the seed from the configured
 * model); the newest row is the active model, so a restart and every replica read the same decision.
 */
export const activeModelChanges = pgTable("active_model_changes", {
  changeId: serial("change_id").primaryKey(),
  modelId: text("model_id")
    .notNull()
    .references(() => embeddingModels.modelId),
  /** The model it replaced; null for the seed. */
  previousModelId: text("previous_model_id"),
  ...decisionColumns(),
});

/**
 * Shadow traffic: one row per live query that was also ranked by a candidate model, off the request's
 * path. Overlap and agreements compare the candidate's answer with what the active model answered.
 */
export const shadowComparisons = pgTable(
  "shadow_comparisons",
  {
    comparisonId: serial("comparison_id").primaryKey(),
    activeModelId: text("active_model_id").notNull(),
    candidateModelId: text("candidate_model_id").notNull(),
    imageType: text("image_type").notNull(),
    /** |top-10 of the active model ∩ top-10 of the candidate| / 10, by gallery image. */
    overlapAt10: doublePrecision("overlap_at10").notNull(),
    /** Whether both rank-1 hits have the same (product, defect type). */
    top1Agrees: boolean("top1_agrees").notNull(),
    /** Whether both suggestions name the same (product, defect type); null when either has none. */
    suggestionAgrees: boolean("suggestion_agrees"),
    /** The active model's search, ms (as answered). */
    activeMs: doublePrecision("active_ms").notNull(),
    /** The candidate's embedding + search, ms. */
    candidateMs: doublePrecision("candidate_ms").notNull(),
    comparedAt: timestamp("compared_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("shadow_comparisons_pair_idx").on(t.candidateModelId, t.activeModelId, t.comparisonId)],
);
