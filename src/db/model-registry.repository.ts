import type pg from "pg";
import { iso, isoOrNull } from "../shared/timestamps.js";
import { STATE_CHANNEL } from "./db.client.js";
import { inPoolTransaction } from "./pool-transaction.js";

/** A registered embedding model, as stored. */
export interface ModelRecord {
  modelId: string;
  /** The resolved model configuration (`ModelSpec`), as JSON. */
  spec: unknown;
  /** Embedding length (elements). */
  dimension: number;
  /** ISO 8601. */
  registeredAt: string;
  registeredBy: string;
  retiredAt: string | null;
}

/** One change of the active model (a promotion, a rollback, or the seed). */
export interface ActiveModelChange {
  modelId: string;
  previousModelId: string | null;
  reason: string;
  setBy: string;
  replicaId: string;
  /** ISO 8601. */
  setAt: string;
}

/** One live query ranked by both models (shadow traffic). */
export interface ShadowComparisonRow {
  activeModelId: string;
  candidateModelId: string;
  imageType: string;
  overlapAt10: number;
  top1Agrees: boolean;
  suggestionAgrees: boolean | null;
  activeMs: number;
  candidateMs: number;
}

/** Shadow traffic of one (candidate, active) pair, summed up. */
export interface ShadowSummary {
  activeModelId: string;
  candidateModelId: string;
  queries: number;
  /** Mean overlap@10. */
  overlapAt10: number | null;
  /** Share of queries whose rank-1 hits have the same (product, defect type). */
  top1Agreement: number | null;
  /** Share of queries (with a suggestion from both) whose suggestions agree. */
  suggestionAgreement: number | null;
  /** Median and 95th percentile of the candidate's embedding + search (ms). */
  candidateP50Ms: number | null;
  candidateP95Ms: number | null;
  /** Median of the active model's search as answered (ms). */
  activeP50Ms: number | null;
  /** ISO 8601 of the newest comparison. */
  lastAt: string | null;
}

/** Advisory lock key serialising promotions and retirements ("models" in ASCII). */
const MODELS_LOCK = 0x6d6f64656c73;

const modelOf = (r: Record<string, unknown>): ModelRecord => ({
  modelId: r.model_id as string,
  spec: r.spec,
  dimension: r.dimension as number,
  registeredAt: iso(r.registered_at),
  registeredBy: r.registered_by as string,
  retiredAt: isoOrNull(r.retired_at),
});

const changeOf = (r: Record<string, unknown>): ActiveModelChange => ({
  modelId: r.model_id as string,
  previousModelId: (r.previous_model_id as string | null) ?? null,
  reason: r.reason as string,
  setBy: r.set_by as string,
  replicaId: r.replica_id as string,
  setAt: iso(r.set_at),
});

/**
 * The deployment's embedding models: which are registered, which one is active (a history whose newest
 * row wins, like the matcher flag), and the shadow comparisons. Writes other replicas must see send a
 * NOTIFY (`model`) in their transaction.
 */
export function createModelRegistryRepository(pool: pg.Pool) {
  const inTransaction = <T>(run: (c: pg.PoolClient) => Promise<T>) =>
    inPoolTransaction(pool, run, MODELS_LOCK);
  const notify = (c: pg.PoolClient) => c.query("select pg_notify($1, 'model')", [STATE_CHANNEL]);

  return {
    /**
     * On a deployment with no active model yet, registers `modelId` and makes it active (the configured
     * model seeds an empty database; afterwards the registry, not the configuration, decides).
     * @returns the active model's id after the call.
     */
    async seed(m: { modelId: string; spec: unknown; dimension: number; replicaId: string }): Promise<string> {
      return inTransaction(async (c) => {
        const { rows } = await c.query(
          "select model_id from active_model_changes order by change_id desc limit 1",
        );
        if (rows[0]) return rows[0].model_id as string;
        await c.query(
          `insert into embedding_models (model_id, spec, dimension, registered_by) values ($1, $2, $3, 'config')
           on conflict (model_id) do update set retired_at = null`,
          [m.modelId, JSON.stringify(m.spec), m.dimension],
        );
        await c.query(
          `insert into active_model_changes (model_id, reason, set_by, replica_id)
           values ($1, 'seeded from the configured model on an empty database', 'config', $2)`,
          [m.modelId, m.replicaId],
        );
        await notify(c);
        return m.modelId;
      });
    },

    /** Every registered model, retired ones included, oldest first. */
    async models(): Promise<ModelRecord[]> {
      const { rows } = await pool.query("select * from embedding_models order by registered_at, model_id");
      return rows.map(modelOf);
    },

    async model(modelId: string): Promise<ModelRecord | undefined> {
      const { rows } = await pool.query("select * from embedding_models where model_id = $1", [modelId]);
      return rows[0] ? modelOf(rows[0]) : undefined;
    },

    /** The newest change of the active model, or undefined on an empty database. */
    async active(): Promise<ActiveModelChange | undefined> {
      return (await this.history(1))[0];
    },

    /** Changes of the active model, newest first. */
    async history(limit = 20): Promise<ActiveModelChange[]> {
      const { rows } = await pool.query(
        "select * from active_model_changes order by change_id desc limit $1",
        [limit],
      );
      return rows.map(changeOf);
    },

    /**
     * Registers a model (again, when it was retired) and announces it; replicas load it at their next read.
     * @returns false when it is registered and not retired already.
     */
    async register(m: { modelId: string; spec: unknown; dimension: number; by: string }): Promise<boolean> {
      return inTransaction(async (c) => {
        const { rows } = await c.query(
          `insert into embedding_models (model_id, spec, dimension, registered_by) values ($1, $2, $3, $4)
           on conflict (model_id) do update set retired_at = null, registered_at = now(),
             registered_by = excluded.registered_by, spec = excluded.spec
           where embedding_models.retired_at is not null
           returning model_id`,
          [m.modelId, JSON.stringify(m.spec), m.dimension, m.by],
        );
        if (rows.length === 0) return false;
        await notify(c);
        return true;
      });
    },

    /**
     * Makes `modelId` the active model in one transaction. `guard` runs inside it first (with the active
     * model's id) and may throw to refuse; nothing is written then.
     */
    async setActive(
      change: { modelId: string; reason: string; setBy: string; replicaId: string },
      guard: (c: pg.PoolClient, activeModelId: string | null) => Promise<void>,
    ): Promise<ActiveModelChange> {
      return inTransaction(async (c) => {
        const { rows } = await c.query(
          "select model_id from active_model_changes order by change_id desc limit 1",
        );
        const was = (rows[0]?.model_id as string | undefined) ?? null;
        await guard(c, was);
        const inserted = await c.query(
          `insert into active_model_changes (model_id, previous_model_id, reason, set_by, replica_id)
           values ($1, $2, $3, $4, $5) returning *`,
          [change.modelId, was, change.reason, change.setBy, change.replicaId],
        );
        await notify(c);
        return changeOf(inserted.rows[0]);
      });
    },

    /**
     * Retires a model that is not active: marks it, deletes its stored embeddings (and texture
     * descriptors) and its index pointers. `guard` runs first, inside the transaction.
     * @returns the ids of its index versions whose files are to be deleted from the bucket.
     */
    async retire(
      modelId: string,
      guard: (c: pg.PoolClient, activeModelId: string | null) => Promise<void>,
    ): Promise<{ indexVersionId: string; artifactKey: string }[]> {
      return inTransaction(async (c) => {
        const { rows } = await c.query(
          "select model_id from active_model_changes order by change_id desc limit 1",
        );
        await guard(c, (rows[0]?.model_id as string | undefined) ?? null);
        await c.query("update embedding_models set retired_at = now() where model_id = $1", [modelId]);
        await c.query("delete from image_embeddings where model_id = $1 or starts_with(model_id, $2)", [
          modelId,
          `${modelId}#`,
        ]);
        await c.query("delete from active_indexes where model_id = $1", [modelId]);
        const versions = await c.query(
          `update index_versions set deleted_at = now() where model_id = $1 and deleted_at is null
           returning index_version_id, artifact_key`,
          [modelId],
        );
        await notify(c);
        return versions.rows.map((r) => ({
          indexVersionId: r.index_version_id,
          artifactKey: r.artifact_key,
        }));
      });
    },

    /** Records one shadow comparison, and keeps the newest `keep` of its pair. */
    async recordShadow(row: ShadowComparisonRow, keep = 10_000): Promise<void> {
      await pool.query(
        `insert into shadow_comparisons (active_model_id, candidate_model_id, image_type, overlap_at10,
           top1_agrees, suggestion_agrees, active_ms, candidate_ms) values ($1,$2,$3,$4,$5,$6,$7,$8)`,
        [
          row.activeModelId,
          row.candidateModelId,
          row.imageType,
          row.overlapAt10,
          row.top1Agrees,
          row.suggestionAgrees,
          row.activeMs,
          row.candidateMs,
        ],
      );
      if (Math.random() < 0.01)
        await pool.query(
          `delete from shadow_comparisons where candidate_model_id = $1 and active_model_id = $2
             and comparison_id < (select min(comparison_id) from (select comparison_id from shadow_comparisons
               where candidate_model_id = $1 and active_model_id = $2 order by comparison_id desc limit $3) k)`,
          [row.candidateModelId, row.activeModelId, keep],
        );
    },

    /** The shadow comparisons of every pair, newest pair first. */
    async shadowSummaries(): Promise<ShadowSummary[]> {
      const { rows } = await pool.query(
        `select active_model_id, candidate_model_id, count(*)::int as queries,
                avg(overlap_at10) as overlap, avg(top1_agrees::int) as top1,
                avg(suggestion_agrees::int) as suggestion,
                percentile_cont(0.5) within group (order by candidate_ms) as c50,
                percentile_cont(0.95) within group (order by candidate_ms) as c95,
                percentile_cont(0.5) within group (order by active_ms) as a50,
                max(compared_at) as last_at
           from shadow_comparisons group by active_model_id, candidate_model_id order by max(comparison_id) desc`,
      );
      const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
      return rows.map((r) => ({
        activeModelId: r.active_model_id,
        candidateModelId: r.candidate_model_id,
        queries: r.queries,
        overlapAt10: num(r.overlap),
        top1Agreement: num(r.top1),
        suggestionAgreement: num(r.suggestion),
        candidateP50Ms: num(r.c50),
        candidateP95Ms: num(r.c95),
        activeP50Ms: num(r.a50),
        lastAt: isoOrNull(r.last_at),
      }));
    },
  };
}

/** The repository's type, derived from its factory. */
export type ModelRegistryRepository = ReturnType<typeof createModelRegistryRepository>;
