import type pg from "pg";
import { STATE_CHANNEL } from "../db/db.client.js";
import { inPoolTransaction } from "../db/pool-transaction.js";
import { iso, isoOrNull } from "../shared/timestamps.js";
import type { ImageType, MatcherVersion } from "../shared/types.js";

export { STATE_CHANNEL };

/** One switch of the matcher flag. */
export interface MatcherVersionChange {
  version: MatcherVersion;
  reason: string;
  setBy: string;
  replicaId: string;
  /** ISO 8601. */
  setAt: string;
}

/** One published index (a row of `index_versions`). */
export interface IndexVersionRecord {
  indexVersionId: string;
  matcherVersion: MatcherVersion;
  imageType: ImageType;
  modelId: string;
  factory: string;
  count: number;
  recallAt10: number | null;
  galleryFingerprint: string | null;
  indexSha256: string;
  artifactKey: string;
  artifactSha256: string;
  artifactBytes: number;
  /** ISO 8601. */
  builtAt: string;
  builtBy: string;
  publishedAt: string;
  deletedAt: string | null;
}

/** The active pointer of one (matcher version, image type). */
export interface ActiveIndex {
  /** The embedding model whose index this is (every registered model has its own pointers). */
  modelId: string;
  matcherVersion: MatcherVersion;
  imageType: ImageType;
  indexVersionId: string;
  previousIndexVersionId: string | null;
  /** ISO 8601. */
  activatedAt: string;
  activatedBy: string;
  reason: string;
}

/** One index a replica serves, as its heartbeat reports it. */
export interface ServedIndexRecord {
  /** The embedding model the index belongs to. */
  modelId: string;
  version: MatcherVersion;
  imageType: ImageType;
  indexVersionId: string | null;
}

/** What one replica last reported of itself. */
export interface ReplicaRecord {
  replicaId: string;
  host: string;
  pid: number;
  startedAt: string;
  lastSeenAt: string;
  ready: boolean;
  served: ServedIndexRecord[];
}

function versionOf(r: Record<string, unknown>): IndexVersionRecord {
  return {
    indexVersionId: r.index_version_id as string,
    matcherVersion: r.matcher_version as MatcherVersion,
    imageType: r.image_type as ImageType,
    modelId: r.model_id as string,
    factory: r.factory as string,
    count: r.count as number,
    recallAt10: (r.recall_at10 as number | null) ?? null,
    galleryFingerprint: (r.gallery_fingerprint as string | null) ?? null,
    indexSha256: r.index_sha256 as string,
    artifactKey: r.artifact_key as string,
    artifactSha256: r.artifact_sha256 as string,
    artifactBytes: Number(r.artifact_bytes),
    builtAt: iso(r.built_at),
    builtBy: r.built_by as string,
    publishedAt: iso(r.published_at),
    deletedAt: isoOrNull(r.deleted_at),
  };
}

function activeOf(r: Record<string, unknown>): ActiveIndex {
  return {
    modelId: r.model_id as string,
    matcherVersion: r.matcher_version as MatcherVersion,
    imageType: r.image_type as ImageType,
    indexVersionId: r.index_version_id as string,
    previousIndexVersionId: (r.previous_index_version_id as string | null) ?? null,
    activatedAt: iso(r.activated_at),
    activatedBy: r.activated_by as string,
    reason: r.reason as string,
  };
}

/**
 * Reads and writes the deployment's serving state (matcher flag, index versions and their active
 * pointers, replica heartbeats). Every write that other replicas must see sends a NOTIFY on
 * {@link STATE_CHANNEL} in the same transaction, so it is announced only once committed.
 */
export function createServingStateRepository(pool: pg.Pool) {
  const inTransaction = <T>(run: (c: pg.PoolClient) => Promise<T>) => inPoolTransaction(pool, run);
  const notify = (c: pg.PoolClient, what: string) =>
    c.query("select pg_notify($1, $2)", [STATE_CHANNEL, what]);

  return {
    inTransaction,

    /** The newest flag row, or undefined on an empty database. */
    async activeMatcherVersion(): Promise<MatcherVersionChange | undefined> {
      return (await this.matcherVersionHistory(1))[0];
    },

    /** The flag's history, newest first. */
    async matcherVersionHistory(limit = 20): Promise<MatcherVersionChange[]> {
      const { rows } = await pool.query(
        "select version, reason, set_by, replica_id, set_at from matcher_version_changes order by change_id desc limit $1",
        [limit],
      );
      return rows.map((r) => ({
        version: r.version,
        reason: r.reason,
        setBy: r.set_by,
        replicaId: r.replica_id,
        setAt: iso(r.set_at),
      }));
    },

    /** Writes the seed row when the table is empty (MATCHER_VERSION only seeds an empty database). */
    async seedMatcherVersion(version: MatcherVersion, replicaId: string): Promise<void> {
      await inTransaction(async (c) => {
        await c.query("lock table matcher_version_changes in exclusive mode");
        const { rowCount } = await c.query("select 1 from matcher_version_changes limit 1");
        if (rowCount) return;
        await c.query(
          "insert into matcher_version_changes (version, reason, set_by, replica_id) values ($1, 'seeded from MATCHER_VERSION on an empty database', 'config', $2)",
          [version, replicaId],
        );
        await notify(c, "flag");
      });
    },

    /** Records a switch of the matcher flag and announces it. */
    async setMatcherVersion(change: Omit<MatcherVersionChange, "setAt">): Promise<void> {
      await inTransaction(async (c) => {
        await c.query(
          "insert into matcher_version_changes (version, reason, set_by, replica_id) values ($1, $2, $3, $4)",
          [change.version, change.reason, change.setBy, change.replicaId],
        );
        await notify(c, "flag");
      });
    },

    /** Every active pointer. */
    async activeIndexes(): Promise<ActiveIndex[]> {
      const { rows } = await pool.query("select * from active_indexes");
      return rows.map(activeOf);
    },

    async indexVersion(id: string): Promise<IndexVersionRecord | undefined> {
      const { rows } = await pool.query("select * from index_versions where index_version_id = $1", [id]);
      return rows[0] ? versionOf(rows[0]) : undefined;
    },

    /** Published versions, newest first; of one (matcher version, image type) when given. */
    async indexVersions(
      target?: { version: MatcherVersion; imageType: ImageType },
      limit = 50,
    ): Promise<IndexVersionRecord[]> {
      const { rows } = target
        ? await pool.query(
            "select * from index_versions where matcher_version = $1 and image_type = $2 order by published_at desc limit $3",
            [target.version, target.imageType, limit],
          )
        : await pool.query("select * from index_versions order by published_at desc limit $1", [limit]);
      return rows.map(versionOf);
    },

    /** Inserts a published version (idempotent: the id is content-addressed). */
    async recordIndexVersion(v: Omit<IndexVersionRecord, "publishedAt" | "deletedAt">): Promise<void> {
      await pool.query(
        `insert into index_versions (index_version_id, matcher_version, image_type, model_id, factory, count,
           recall_at10, gallery_fingerprint, index_sha256, artifact_key, artifact_sha256, artifact_bytes, built_at, built_by)
         values ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) on conflict (index_version_id) do nothing`,
        [
          v.indexVersionId,
          v.matcherVersion,
          v.imageType,
          v.modelId,
          v.factory,
          v.count,
          v.recallAt10,
          v.galleryFingerprint,
          v.indexSha256,
          v.artifactKey,
          v.artifactSha256,
          v.artifactBytes,
          v.builtAt,
          v.builtBy,
        ],
      );
    },

    /**
     * Points (model, matcher version, image type) at `indexVersionId` in one transaction and announces it.
     * `onlyIfNone`: leaves an existing pointer alone (a replica publishing the index it already had).
     * `guard`: runs in the same transaction first; a throw aborts the flip.
     * @returns whether the pointer now names `indexVersionId`.
     */
    async activate(
      a: { indexVersionId: string; activatedBy: string; reason: string },
      {
        onlyIfNone = false,
        guard,
      }: { onlyIfNone?: boolean; guard?: (c: pg.PoolClient) => Promise<void> } = {},
    ): Promise<boolean> {
      return inTransaction(async (c) => {
        await guard?.(c);
        const { rows } = await c.query(
          "select model_id, matcher_version, image_type from index_versions where index_version_id = $1 and deleted_at is null",
          [a.indexVersionId],
        );
        const target = rows[0];
        if (!target) throw new Error(`index version ${a.indexVersionId} does not exist or was deleted`);
        const current = await c.query(
          "select index_version_id from active_indexes where model_id = $1 and matcher_version = $2 and image_type = $3 for update",
          [target.model_id, target.matcher_version, target.image_type],
        );
        const was: string | undefined = current.rows[0]?.index_version_id;
        if (was === a.indexVersionId) return true;
        if (was && onlyIfNone) return false;
        await c.query(
          `insert into active_indexes (model_id, matcher_version, image_type, index_version_id, previous_index_version_id, activated_by, reason)
           values ($7, $1, $2, $3, $4, $5, $6)
           on conflict (model_id, matcher_version, image_type) do update set index_version_id = excluded.index_version_id,
             previous_index_version_id = excluded.previous_index_version_id, activated_at = now(),
             activated_by = excluded.activated_by, reason = excluded.reason`,
          [
            target.matcher_version,
            target.image_type,
            a.indexVersionId,
            was ?? null,
            a.activatedBy,
            a.reason,
            target.model_id,
          ],
        );
        await notify(c, "index");
        return true;
      });
    },

    /**
     * Versions of one target beyond the newest `keep` that are neither active nor the previous one (the
     * grace period's), oldest first: what the retention policy deletes.
     */
    async expiredVersions(
      target: { modelId: string; version: MatcherVersion; imageType: ImageType },
      keep: number,
    ) {
      const { rows } = await pool.query(
        `select v.* from index_versions v
          where v.matcher_version = $1 and v.image_type = $2 and v.model_id = $4 and v.deleted_at is null
            and v.index_version_id not in (select index_version_id from active_indexes
                                            union select previous_index_version_id from active_indexes
                                             where previous_index_version_id is not null)
          order by v.published_at desc offset $3`,
        [target.version, target.imageType, keep, target.modelId],
      );
      return rows.map(versionOf);
    },

    async markDeleted(id: string): Promise<void> {
      await pool.query("update index_versions set deleted_at = now() where index_version_id = $1", [id]);
    },

    /** Upserts this replica's heartbeat row. */
    async heartbeat(r: Omit<ReplicaRecord, "lastSeenAt">): Promise<void> {
      await pool.query(
        `insert into replicas (replica_id, host, pid, started_at, last_seen_at, ready, served)
         values ($1, $2, $3, $4, now(), $5, $6)
         on conflict (replica_id) do update set last_seen_at = now(), ready = excluded.ready, served = excluded.served`,
        [r.replicaId, r.host, r.pid, r.startedAt, r.ready, JSON.stringify(r.served)],
      );
    },

    /** Replicas seen within `withinMs`, oldest first; older rows (replicas long gone) are deleted. */
    async liveReplicas(withinMs: number): Promise<ReplicaRecord[]> {
      await pool.query("delete from replicas where last_seen_at < now() - interval '1 hour'");
      const { rows } = await pool.query(
        "select * from replicas where last_seen_at >= now() - make_interval(secs => $1) order by started_at",
        [withinMs / 1000],
      );
      return rows.map((r) => ({
        replicaId: r.replica_id,
        host: r.host,
        pid: r.pid,
        startedAt: iso(r.started_at),
        lastSeenAt: iso(r.last_seen_at),
        ready: r.ready,
        served: r.served,
      }));
    },

    /** Ids of replicas not seen within `staleMs` (dead or cut off). */
    async isStale(replicaId: string, staleMs: number): Promise<boolean> {
      const { rows } = await pool.query(
        "select last_seen_at >= now() - make_interval(secs => $2) as alive from replicas where replica_id = $1",
        [replicaId, staleMs / 1000],
      );
      return rows[0]?.alive !== true;
    },

    async removeReplica(replicaId: string): Promise<void> {
      await pool.query("delete from replicas where replica_id = $1", [replicaId]);
    },
  };
}

/** The repository's type, derived from its factory. */
export type ServingStateRepository = ReturnType<typeof createServingStateRepository>;
