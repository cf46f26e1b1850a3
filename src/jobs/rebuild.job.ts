import { randomUUID } from "node:crypto";
import type pg from "pg";
import PgBoss from "pg-boss";
import type { Logger } from "pino";
import { STATE_CHANNEL } from "../deployment/serving-state.repository.js";
import type { GalleryProgress } from "../matchers/gallery-source.js";
import type { RebuildOutcome } from "../matchers/matcher.js";
import type { ModelIndexTarget, ModelRuntimes } from "../models/model-runtimes.js";
import { errors } from "../shared/errors.js";
import { iso, isoOrNull } from "../shared/timestamps.js";

/** Lifecycle of a rebuild task: queued (waiting for a replica), running, then succeeded or failed. */
export type RebuildStatus = "queued" | "running" | "succeeded" | "failed";

/**
 * One index: an embedding model, a matcher version and an image type. A task's targets always name their
 * model (filled with the active one when asked without), so a rebuild asked before a promotion builds the
 * indexes of the model it was asked for.
 */
export type IndexTarget = ModelIndexTarget;

/** A rebuild of one or more indexes, visible from every replica while it runs. */
export interface RebuildTask {
  id: string;
  targets: IndexTarget[];
  /** `candidate`: the preparation of a registered candidate model (its gallery re-embedded, its indexes built). */
  trigger: "admin" | "startup" | "compaction" | "candidate";
  status: RebuildStatus;
  /** Index being rebuilt now, while running. */
  current: IndexTarget | null;
  /** Summed over the indexes handled so far. */
  progress: GalleryProgress;
  /** Replica running it, or that ran it last; null while first queued. */
  replicaId: string | null;
  /** Runs so far (1 for the first; a retry after a replica died raises it). */
  attempt: number;
  /** ISO 8601: when it was requested. */
  startedAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  /** Why the task failed (the previous index keeps being served), or why the last attempt ended. */
  error: string | null;
  /** Gallery images left out (first 50), with reasons. */
  failures: { item: string; reason: string }[];
  /** Per index: vectors in the new index, how long the swap took (ms), and the index version published. */
  results: (IndexTarget & { count: number; swapMs: number; indexVersionId: string | null })[];
}

/** One index a task rebuilt. */
export type RebuildResultView = RebuildTask["results"][number];

/** Settings of the rebuild queue. */
export interface RebuildQueueSettings {
  /** Retries after a replica died mid-rebuild (REBUILD_RETRIES). */
  retries: number;
  /** A rebuild still active after this long is failed by pg-boss and retried (REBUILD_TIMEOUT_MINUTES). */
  timeoutMinutes: number;
  /** A replica whose heartbeat is older than this is dead: its running task is retried (ms). */
  replicaStaleMs: number;
  /** How often idle replicas poll the queue (ms, at least 500: pg-boss's minimum). */
  pollMs: number;
  /** Run rebuilds on this replica (REBUILD_WORKER); every replica can still request them. */
  work: boolean;
}

/** Publishes a freshly built index: uploads its artifact, records and activates its version. */
export type PublishIndex = (
  target: IndexTarget,
  outcome: RebuildOutcome,
  /** Runs inside the activation's transaction; throws when this replica no longer owns the task. */
  guard: (c: pg.PoolClient) => Promise<void>,
) => Promise<string | null>;

const QUEUE = "index-rebuild";
const HISTORY = 20;
const MAX_FAILURES_SHOWN = 50;
const PROGRESS_WRITE_MS = 1000;
const EMPTY_PROGRESS: GalleryProgress = { total: 0, processed: 0, newlyEmbedded: 0, failed: 0 };

function taskOf(r: Record<string, unknown>): RebuildTask {
  return {
    id: r.task_id as string,
    targets: r.targets as IndexTarget[],
    trigger: r.trigger as RebuildTask["trigger"],
    status: r.status as RebuildStatus,
    current: (r.current as IndexTarget | null) ?? null,
    progress: r.progress as GalleryProgress,
    replicaId: (r.replica_id as string | null) ?? null,
    attempt: r.attempt as number,
    startedAt: iso(r.created_at),
    finishedAt: isoOrNull(r.finished_at),
    durationMs: (r.duration_ms as number | null) ?? null,
    error: (r.error as string | null) ?? null,
    failures: r.failures as RebuildTask["failures"],
    results: r.results as RebuildTask["results"],
  };
}

/**
 * Index rebuilds for the whole deployment: a task row in `rebuild_tasks` (what operators see, from any
 * replica) carried by a pg-boss job (who runs it). At most one task is open at a time (a partial unique
 * index), so ten replicas asking for the startup rebuild at once build once. pg-boss was chosen over
 * graphile-worker because its `fail` of an active job hands it to the retry policy at once: a replica
 * that dies mid-rebuild (its heartbeat stops, see {@link RebuildJobs.superviseOnce}) has its job retried on
 * another within seconds, where graphile-worker unlocks a crashed worker's job only after 4 hours.
 */
export function createRebuildJobs({
  pool,
  databaseUrl,
  models,
  loadModel,
  publish,
  runExclusive,
  replicaId,
  isReplicaStale,
  settings,
  logger,
  onFinished = () => {},
}: {
  pool: pg.Pool;
  databaseUrl: string;
  /** The models served here; a target names one of them. */
  models: ModelRuntimes;
  /** Reads the model registry when a target's model is not served here yet (registered a moment ago). */
  loadModel?: (modelId: string) => Promise<void>;
  publish: PublishIndex;
  /** Serialises work on this replica's index cache (a rebuild's save and a download's install). */
  runExclusive: <T>(run: () => Promise<T>) => Promise<T>;
  replicaId: string;
  isReplicaStale: (replicaId: string) => Promise<boolean>;
  settings: RebuildQueueSettings;
  logger: Logger;
  /** Called once per task this replica ran, when it ends (metrics). */
  onFinished?: (task: Readonly<RebuildTask>) => void;
}) {
  const boss = new PgBoss({
    connectionString: databaseUrl,
    max: 2,
    // Retention and expiry sweeps; the supervisor below handles dead replicas much sooner.
    maintenanceIntervalSeconds: 60,
  });
  boss.on("error", (err) => logger.warn({ err }, "rebuild queue error"));
  let started: Promise<void> | undefined;
  let workerId: string | undefined;
  let running: Promise<void> | undefined;
  let closed = false;

  async function ensureStarted(): Promise<void> {
    started ??= (async () => {
      await boss.start();
      if (!(await boss.getQueue(QUEUE))) {
        await boss
          .createQueue(QUEUE, {
            name: QUEUE,
            policy: "standard",
            retryLimit: settings.retries,
            retryDelay: 1,
            expireInSeconds: settings.timeoutMinutes * 60,
          })
          .catch(async (err) => {
            if (!(await boss.getQueue(QUEUE))) throw err;
          });
      }
      if (settings.work && !closed) {
        workerId = await boss.work<{ taskId: string }>(
          QUEUE,
          { batchSize: 1, pollingIntervalSeconds: Math.max(0.5, settings.pollMs / 1000) },
          async ([job]) => {
            if (!job) return;
            running = handle(job.data.taskId);
            try {
              await running;
            } finally {
              running = undefined;
            }
          },
        );
      }
    })().catch((err) => {
      started = undefined;
      throw err;
    });
    return started;
  }

  async function readTask(id: string): Promise<RebuildTask | undefined> {
    const { rows } = await pool.query("select * from rebuild_tasks where task_id = $1", [id]);
    return rows[0] ? taskOf(rows[0]) : undefined;
  }

  /** Runs task `taskId` on this replica (a pg-boss job handler). */
  async function handle(taskId: string): Promise<void> {
    const claimed = await pool.query(
      `update rebuild_tasks set status = 'running', replica_id = $2, attempt = attempt + 1,
         started_at = coalesce(started_at, now()), progress = $3
       where task_id = $1 and status in ('queued', 'running') returning *`,
      [taskId, replicaId, JSON.stringify(EMPTY_PROGRESS)],
    );
    if (!claimed.rows[0]) return; // already finished (failed by the supervisor, say)
    const task = taskOf(claimed.rows[0]);
    const attempt = task.attempt;
    logger.info({ taskId, targets: task.targets, attempt }, "index rebuild started on this replica");
    const t0 = performance.now();
    const done = { ...EMPTY_PROGRESS };
    let lastWrite = 0;
    const owns = async (c: pg.PoolClient) => {
      const { rows } = await c.query(
        "select 1 from rebuild_tasks where task_id = $1 and replica_id = $2 and attempt = $3 and status = 'running' for update",
        [taskId, replicaId, attempt],
      );
      if (!rows[0])
        throw new Error("the task was taken over by another replica; this build is not activated");
    };
    const save = (fields: Record<string, unknown>) => {
      const names = Object.keys(fields);
      return pool.query(
        `update rebuild_tasks set ${names.map((n, i) => `${n} = $${i + 4}`).join(", ")}
          where task_id = $1 and replica_id = $2 and attempt = $3`,
        [taskId, replicaId, attempt, ...names.map((n) => fields[n])],
      );
    };
    try {
      for (const target of task.targets) {
        if (target.modelId && !models.get(target.modelId)) await loadModel?.(target.modelId);
        const matcher = models.matcher(target);
        if (!matcher)
          throw new Error(
            `matcher ${target.version} of model ${target.modelId ?? "(active)"} is not served on replica ${replicaId}`,
          );
        task.current = target;
        await save({ current: JSON.stringify(target) });
        // Build, publish and activate under the cache lock: a download must not replace the new files
        // in the cache before they are uploaded.
        const { outcome, indexVersionId } = await runExclusive(async () => {
          const built = await matcher.rebuild(target.imageType, (p) => {
            task.progress = {
              total: done.total + p.total,
              processed: done.processed + p.processed,
              newlyEmbedded: done.newlyEmbedded + p.newlyEmbedded,
              failed: done.failed + p.failed,
            };
            if (performance.now() - lastWrite > PROGRESS_WRITE_MS) {
              lastWrite = performance.now();
              save({ progress: JSON.stringify(task.progress) }).catch(() => undefined);
            }
          });
          return { outcome: built, indexVersionId: await publish(target, built, owns) };
        });
        Object.assign(done, task.progress);
        task.results.push({
          ...target,
          count: outcome.manifest.count,
          swapMs: outcome.swapMs,
          indexVersionId,
        });
        task.failures.push(...outcome.failures.slice(0, MAX_FAILURES_SHOWN - task.failures.length));
        await save({ results: JSON.stringify(task.results), failures: JSON.stringify(task.failures) });
      }
      task.status = "succeeded";
    } catch (err) {
      task.status = "failed";
      task.error = `${(err as Error).message}. The previous index is still being served.`;
      logger.error({ err, taskId }, "index rebuild failed");
    } finally {
      task.durationMs = performance.now() - t0;
      task.finishedAt = new Date().toISOString();
      await save({
        status: task.status,
        current: null,
        progress: JSON.stringify(task.progress),
        error: task.error,
        finished_at: task.finishedAt,
        duration_ms: task.durationMs,
      }).catch((err) => logger.warn({ err, taskId }, "could not record the rebuild's outcome"));
      await pool.query("select pg_notify($1, 'task')", [STATE_CHANNEL]).catch(() => undefined);
      logger.info(
        { taskId, status: task.status, durationMs: Math.round(task.durationMs), progress: task.progress },
        "index rebuild finished",
      );
      onFinished(task);
    }
  }

  return {
    /** Starts the queue (and this replica's worker). Idempotent; retried by the caller while the database is down. */
    startQueue: ensureStarted,

    /**
     * Queues a rebuild for the deployment and returns its task at once; whichever replica is free runs it.
     * @throws DomainError REBUILD_IN_PROGRESS when one is queued or running (on any replica); BAD_USER_INPUT
     * when `version` has no gallery; SERVICE_UNAVAILABLE when the database does not answer.
     */
    async start({
      targets: asked,
      trigger,
      requestedBy = trigger === "admin" ? "admin" : `${trigger} of ${replicaId}`,
    }: {
      targets: IndexTarget[];
      trigger: RebuildTask["trigger"];
      requestedBy?: string;
    }): Promise<RebuildTask> {
      const targets = asked.map((t) => ({ ...t, modelId: t.modelId ?? models.active().modelId }));
      for (const t of targets) {
        if (!models.matcher(t)) {
          const version = t.version;
          throw errors.badInput(
            models.get(t.modelId)
              ? `Matcher ${version} has no gallery configured${version === "v1" ? " (set V1_GALLERY_DIR)" : ""}.`
              : `Model ${t.modelId} is not served by this replica.`,
          );
        }
      }
      const id = randomUUID();
      try {
        await ensureStarted();
        await pool.query(
          `insert into rebuild_tasks (task_id, targets, trigger, status, progress, requested_by, failures, results)
           values ($1, $2, $3, 'queued', $4, $5, '[]', '[]')`,
          [id, JSON.stringify(targets), trigger, JSON.stringify(EMPTY_PROGRESS), requestedBy],
        );
      } catch (err) {
        if ((err as { code?: string }).code === "23505") {
          const { rows } = await pool.query(
            "select task_id from rebuild_tasks where status in ('queued', 'running') limit 1",
          );
          throw errors.rebuildInProgress(rows[0]?.task_id ?? "unknown");
        }
        throw errors.serviceUnavailable(
          `The rebuild could not be queued: the database does not answer (${(err as Error).message}). Retry when it is back.`,
          err,
        );
      }
      try {
        const jobId = await boss.send(QUEUE, { taskId: id });
        await pool.query("update rebuild_tasks set job_id = $2 where task_id = $1", [id, jobId]);
      } catch (err) {
        await pool.query("delete from rebuild_tasks where task_id = $1", [id]).catch(() => undefined);
        throw errors.serviceUnavailable(`The rebuild could not be queued: ${(err as Error).message}`, err);
      }
      if (workerId) boss.notifyWorker(workerId);
      logger.info({ taskId: id, targets, trigger }, "index rebuild queued");
      return (await readTask(id)) as RebuildTask;
    },

    /** A task by id, from any replica. */
    get: readTask,

    /** Recent tasks, newest first. */
    async list(): Promise<RebuildTask[]> {
      const { rows } = await pool.query("select * from rebuild_tasks order by created_at desc limit $1", [
        HISTORY,
      ]);
      return rows.map(taskOf);
    },

    /** The open task (queued or running), if any. */
    async open(): Promise<RebuildTask | undefined> {
      const { rows } = await pool.query("select * from rebuild_tasks where status in ('queued', 'running')");
      return rows[0] ? taskOf(rows[0]) : undefined;
    },

    /**
     * Hands the running task of a dead replica (heartbeat older than `replicaStaleMs`) back to pg-boss's
     * retry policy, or fails it with a clear error when its retries are used up; fails a queued task whose
     * job pg-boss gave up on (expired). Every replica runs this on its poll; the row update is conditional,
     * so two replicas never act on the same task twice.
     */
    async superviseOnce(): Promise<void> {
      if (!started) return;
      const { rows } = await pool.query(
        "select * from rebuild_tasks where status in ('queued', 'running') and job_id is not null",
      );
      for (const r of rows) {
        const task = taskOf(r);
        const jobId = r.job_id as string;
        if (task.status === "running" && task.replicaId && (await isReplicaStale(task.replicaId))) {
          await boss.fail(QUEUE, jobId, { message: `replica ${task.replicaId} stopped mid-rebuild` });
          const job = await boss.getJobById(QUEUE, jobId);
          const retrying = job?.state === "retry" || job?.state === "created";
          const why = `replica ${task.replicaId} stopped answering mid-rebuild (attempt ${task.attempt})`;
          const { rowCount } = await pool.query(
            `update rebuild_tasks set status = $3, error = $4, current = null,
               finished_at = case when $3 = 'failed' then now() else null end
             where task_id = $1 and replica_id = $2 and attempt = $5 and status = 'running'`,
            [
              task.id,
              task.replicaId,
              retrying ? "queued" : "failed",
              retrying
                ? `${why}; retrying on another replica`
                : `${why}, and its ${settings.retries} retries are used up. The previous index is still being served; run rebuildIndex again.`,
              task.attempt,
            ],
          );
          if (rowCount)
            logger.warn({ taskId: task.id, dead: task.replicaId, retrying }, "rebuild of a dead replica");
          continue;
        }
        const job = await boss.getJobById(QUEUE, jobId, { includeArchive: true });
        if (job && (job.state === "failed" || job.state === "cancelled" || job.state === "completed")) {
          await pool.query(
            `update rebuild_tasks set status = 'failed', finished_at = now(), current = null,
               error = coalesce(error || '; ', '') || $2
             where task_id = $1 and status in ('queued', 'running')`,
            [
              task.id,
              `the rebuild job ended (${job.state}) without finishing the task; run rebuildIndex again`,
            ],
          );
        }
      }
    },

    /** Waits for task `id` to end (succeeded or failed) and returns it. */
    async untilDone(id: string, pollMs = 100): Promise<RebuildTask> {
      for (;;) {
        const t = await readTask(id);
        if (!t) throw new Error(`rebuild task ${id} does not exist`);
        if (t.status === "succeeded" || t.status === "failed") return t;
        await new Promise((r) => setTimeout(r, pollMs));
      }
    },

    /** Resolves when no task is open in the deployment (for the sample gallery, shutdown and tests). */
    async whenIdle(pollMs = 100): Promise<void> {
      for (;;) {
        if (running) await running.catch(() => undefined);
        const open = await pool.query("select 1 from rebuild_tasks where status in ('queued', 'running')");
        if (!open.rowCount) return;
        await new Promise((r) => setTimeout(r, pollMs));
      }
    },

    /** Stops this replica's worker after its rebuild in progress, then the queue. */
    async close(): Promise<void> {
      closed = true;
      if (workerId) await boss.offWork(QUEUE).catch(() => undefined);
      await running?.catch(() => undefined);
      if (started) await boss.stop({ graceful: true, wait: true, timeout: 5000 }).catch(() => undefined);
    },
  };
}

/** The rebuild job runner's type, derived from its factory. */
export type RebuildJobs = ReturnType<typeof createRebuildJobs>;
