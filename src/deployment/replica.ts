import { hostname } from "node:os";
import pg from "pg";
import type { Logger } from "pino";
import { type IndexManifest, indexVersionId } from "../index/index.store.js";
import type { IndexTarget, PublishIndex, RebuildJobs } from "../jobs/rebuild.job.js";
import type { Matcher } from "../matchers/matcher.js";
import { indexTargetsOf, type ModelRuntime, type ModelRuntimes } from "../models/model-runtimes.js";
import type { MatcherVersionFlag } from "../search/matcher-version.flag.js";
import { errors } from "../shared/errors.js";
import { IMAGE_TYPES, type ImageType, type MatcherVersion } from "../shared/types.js";
import {
  type ActiveIndex,
  type IndexVersionRecord,
  type ServingStateRepository,
  STATE_CHANNEL,
} from "./serving-state.repository.js";

/** Settings of a replica's place in the deployment. */
export interface ReplicaSettings {
  /** REPLICA_ID: this replica's name in `status.replicas` and the tables. */
  replicaId: string;
  /** STATE_POLL_MS: how often the database is read for the flag and the active versions (the truth; NOTIFY only wakes the poll early). */
  pollMs: number;
  /** READY_GRACE_MS: how long after an activation serving the previous version still counts as ready. */
  graceMs: number;
  /** REPLICA_STALE_MS: a replica whose heartbeat is older than this is dead. */
  staleMs: number;
  /** INDEX_VERSIONS_KEPT: versions kept per index beyond the active and previous ones (rollback). */
  keepVersions: number;
}

/** Why one index of this replica is not (yet) on its active version. */
interface SyncProblem {
  indexVersionId: string;
  reason: string;
  /** Epoch ms of the last attempt (a failed download is retried after {@link RETRY_FAILED_MS}). */
  at: number;
}

const RETRY_FAILED_MS = 30_000;
const key = (modelId: string, version: MatcherVersion, imageType: ImageType) =>
  `${modelId}/${version}/${imageType}`;

/**
 * This process as one replica of a deployment: it follows the matcher flag and the active index versions
 * in PostgreSQL (LISTEN/NOTIFY wakes it, a poll every {@link ReplicaSettings.pollMs} is the truth: NOTIFY is
 * never replayed), downloads and swaps in activated versions off the serving path, publishes what it
 * builds, writes its heartbeat and supervises rebuilds of dead replicas. A single `npm start` is a
 * deployment of one replica; there is no other code path.
 */
export function createReplica({
  databaseUrl,
  repo,
  models,
  flag,
  jobs,
  runExclusive,
  isBusy,
  settings,
  follow: following = true,
  onFirstContact,
  afterFirstContact,
  onGallerySynced,
  onStateRead,
  logger,
}: {
  databaseUrl: string;
  repo: ServingStateRepository;
  /** The models served here: the indexes of each are followed (candidates' too, so a promotion is a flip). */
  models: ModelRuntimes;
  flag: MatcherVersionFlag;
  jobs: () => RebuildJobs;
  runExclusive: <T>(run: () => Promise<T>) => Promise<T>;
  /** Whether {@link runExclusive} is taken (a rebuild or a download runs). */
  isBusy: () => boolean;
  settings: ReplicaSettings;
  /** Follow the active index versions (a server does; a CLI command that only rebuilds does not). */
  follow?: boolean;
  /** Run once, the first time the database answers (migrations, when it was down at startup). */
  onFirstContact?: (() => Promise<void>) | undefined;
  /** Run once after the first follow that came after {@link onFirstContact} (the startup policy). */
  afterFirstContact?: (() => Promise<void>) | undefined;
  /** Run after each read of the gallery change log (the compaction policy). */
  onGallerySynced?: (() => Promise<void>) | undefined;
  /** Run after each read of the serving state, before the indexes are followed (the model registry). */
  onStateRead?: (() => Promise<void>) | undefined;
  logger: Logger;
}) {
  let pendingFirstContact = onFirstContact;
  let pendingAfterContact = onFirstContact ? afterFirstContact : undefined;
  const log = logger.child({ replica: settings.replicaId });
  const startedAt = new Date().toISOString();
  const problems = new Map<string, SyncProblem>();
  let active = new Map<string, ActiveIndex>();
  let databaseReachable = false;
  let timer: NodeJS.Timeout | undefined;
  let syncing: Promise<void> | undefined;
  let again = false;
  let listener: pg.Client | undefined;
  let closed = false;
  let gallerySyncing: Promise<void> | undefined;
  let galleryAgain = false;
  let galleryProblem: string | null = null;

  /**
   * Applies the gallery change log to every matcher's served indexes; calls that arrive while one runs
   * coalesce into one more, so a burst of NOTIFYs costs two reads.
   */
  function syncGallery(): Promise<void> {
    if (gallerySyncing) {
      galleryAgain = true;
      return gallerySyncing;
    }
    gallerySyncing = (async () => {
      do {
        galleryAgain = false;
        try {
          for (const r of models.all()) for (const m of r.matchers.values()) await m.syncGallery();
          if (galleryProblem) log.info("gallery change log readable again");
          galleryProblem = null;
        } catch (err) {
          if (galleryProblem === null)
            log.warn({ err }, "gallery change log unreadable; serving what was applied");
          galleryProblem = (err as Error).message;
        }
        await onGallerySynced?.().catch((err) => log.warn({ err }, "compaction check failed"));
      } while (galleryAgain && !closed);
    })().finally(() => {
      gallerySyncing = undefined;
    });
    return gallerySyncing;
  }
  let beating = false;
  let beatTimer: NodeJS.Timeout | undefined;

  /** Every index of every model served here, the active model's first. */
  const targets = (): Required<IndexTarget>[] => models.all().flatMap(indexTargetsOf);

  /** Brings one index to its active version: from the local cache when it holds it, else from the bucket. */
  async function follow(target: Required<IndexTarget>, want: ActiveIndex): Promise<void> {
    const { modelId, version, imageType } = target;
    const runtime = models.get(modelId);
    const matcher = models.matcher(target);
    if (!runtime || !matcher) return;
    const k = key(modelId, version, imageType);
    const served = matcher.state(imageType);
    if (served.indexVersionId === want.indexVersionId && served.source !== "fallback") {
      problems.delete(k);
      return;
    }
    const known = problems.get(k);
    if (known?.indexVersionId === want.indexVersionId && Date.now() - known.at < RETRY_FAILED_MS) return;
    // A rebuild on this replica holds the cache; follow at a later poll.
    if (isBusy()) return;
    try {
      await runExclusive(async () => {
        const record = await repo.indexVersion(want.indexVersionId);
        if (!record) throw new Error(`index version ${want.indexVersionId} is not recorded`);
        // The local cache may already hold it (this replica built it, or downloaded it before a restart).
        if (await loadsFromCache(matcher, imageType, record)) return;
        const t0 = performance.now();
        await runtime.artifacts.download(version, imageType, record);
        if (!(await matcher.loadPersisted(imageType, "downloaded", false)))
          throw new Error(
            `index version ${record.indexVersionId.slice(0, 12)} (model ${record.modelId}, ${record.factory}) does not match this replica's model or index settings`,
          );
        log.info(
          {
            version,
            imageType,
            indexVersionId: record.indexVersionId,
            ms: Math.round(performance.now() - t0),
          },
          "activated index version downloaded and swapped in",
        );
      });
      problems.delete(k);
    } catch (err) {
      const reason = (err as Error).message;
      problems.set(k, { indexVersionId: want.indexVersionId, reason, at: Date.now() });
      log.error(
        { err, version, imageType, indexVersionId: want.indexVersionId },
        "could not serve the active index version; keeping the one served",
      );
    }
  }

  async function loadsFromCache(matcher: Matcher, imageType: ImageType, record: IndexVersionRecord) {
    const cached = await matcher.persistedManifest(imageType);
    if (!cached || indexVersionId(cached) !== record.indexVersionId) return false;
    return matcher.loadPersisted(imageType, "loaded", false);
  }

  /** One read of the database: flag, active versions, heartbeat, supervision of rebuilds. */
  async function syncOnce(): Promise<void> {
    if (pendingFirstContact) {
      try {
        const run = pendingFirstContact;
        pendingFirstContact = undefined;
        await run().catch((err) => {
          pendingFirstContact = run;
          throw err;
        });
        log.info("database is back: following the deployment's serving state");
      } catch {
        return;
      }
    }
    try {
      const decision = await repo.activeMatcherVersion();
      if (decision) flag.apply(decision);
      active = new Map(
        (await repo.activeIndexes()).map((a) => [key(a.modelId, a.matcherVersion, a.imageType), a]),
      );
      databaseReachable = true;
      await onStateRead?.().catch((err) => log.warn({ err }, "the model registry could not be applied"));
    } catch (err) {
      if (databaseReachable) log.warn({ err }, "database unreachable; serving the indexes this replica has");
      databaseReachable = false;
      return;
    }
    if (following) {
      await syncGallery();
      for (const t of targets()) {
        const want = active.get(key(t.modelId, t.version, t.imageType));
        if (want) await follow(t, want);
      }
    }
    if (pendingAfterContact) {
      const run = pendingAfterContact;
      pendingAfterContact = undefined;
      await run().catch((err) => log.error({ err }, "the startup plan after the database came back failed"));
    }
  }

  /**
   * The heartbeat and the supervision of rebuilds, on their own timer: a long download or a rebuild on
   * this replica must never look like a dead replica to the others.
   */
  async function beat(): Promise<void> {
    if (beating || closed) return;
    beating = true;
    try {
      await repo.heartbeat({
        replicaId: settings.replicaId,
        host: hostname(),
        pid: process.pid,
        startedAt,
        ready: readiness().ready,
        served: served(),
      });
      await jobs().startQueue();
      await jobs().superviseOnce();
    } catch (err) {
      log.debug({ err }, "heartbeat or rebuild supervision failed; trying again at the next beat");
    } finally {
      beating = false;
    }
  }

  /** Runs {@link syncOnce}, coalescing calls that arrive while one runs into one more. */
  function sync(): Promise<void> {
    if (syncing) {
      again = true;
      return syncing;
    }
    syncing = (async () => {
      do {
        again = false;
        await syncOnce();
      } while (again && !closed);
    })().finally(() => {
      syncing = undefined;
    });
    return syncing;
  }

  async function listen(): Promise<void> {
    if (closed) return;
    const client = new pg.Client({ connectionString: databaseUrl });
    const retry = () => {
      if (listener === client) listener = undefined;
      client.end().catch(() => undefined);
      if (!closed) setTimeout(() => void listen(), settings.pollMs).unref();
    };
    client.on("error", retry);
    client.on("notification", (message) => {
      // Gallery edits need no flag or version read: apply them at once, even while a download runs.
      if (message.payload === "gallery") {
        if (following) void syncGallery();
      } else void sync();
    });
    try {
      await client.connect();
      await client.query(`listen ${STATE_CHANNEL}`);
      listener = client;
      void sync(); // what changed while not listening
    } catch {
      client.removeListener("error", retry);
      retry();
    }
  }

  function served() {
    return targets().map((t) => ({
      modelId: t.modelId,
      version: t.version,
      imageType: t.imageType,
      indexVersionId: (models.matcher(t) as Matcher).state(t.imageType).indexVersionId,
    }));
  }

  /** Whether this replica serves the active versions of the active matcher (or the previous ones, within the grace period). */
  function readiness() {
    const version = flag.get();
    const modelId = models.active().modelId;
    const matcher = models.matcher({ modelId, version, imageType: "defect" });
    const reasons: string[] = [];
    const indexes = IMAGE_TYPES.map((imageType) => {
      const s = matcher?.state(imageType);
      const want = active.get(key(modelId, version, imageType));
      const problem = problems.get(key(modelId, version, imageType));
      if (!matcher) return { imageType, ready: false };
      if (!s?.ready)
        reasons.push(`index ${version}/${imageType} is not served yet (being built, downloaded or loaded)`);
      else if (want && s.indexVersionId !== want.indexVersionId) {
        const inGrace =
          s.indexVersionId === want.previousIndexVersionId &&
          Date.now() - Date.parse(want.activatedAt) < settings.graceMs;
        if (!inGrace)
          reasons.push(
            `index ${version}/${imageType} serves version ${s.indexVersionId?.slice(0, 12)}, not the active ${want.indexVersionId.slice(0, 12)}${problem ? `: ${problem.reason}` : " (being downloaded)"}`,
          );
      }
      return {
        imageType,
        ready: s?.ready === true,
        servedIndexVersion: s?.indexVersionId ?? null,
        activeIndexVersion: want?.indexVersionId ?? null,
        problem: problem?.reason ?? null,
      };
    });
    if (!matcher) reasons.push(`matcher ${version} is not configured`);
    return {
      ready: reasons.length === 0,
      reasons,
      detail: {
        replicaId: settings.replicaId,
        activeVersion: version,
        activeModelId: modelId,
        databaseReachable,
        indexes,
      },
    };
  }

  /** Deletes versions beyond the retention of one index from the bucket. */
  async function applyRetention(target: Required<IndexTarget>): Promise<void> {
    const runtime = models.get(target.modelId);
    if (!runtime) return;
    for (const old of await repo.expiredVersions(target, settings.keepVersions)) {
      await runtime.artifacts.remove(old.artifactKey);
      await repo.markDeleted(old.indexVersionId);
      log.info(
        { indexVersionId: old.indexVersionId, ...target },
        "old index version deleted from the bucket",
      );
    }
  }

  /** The target with its model named (a target without one is the active model's). */
  const withModel = (t: IndexTarget): Required<IndexTarget> => ({
    ...t,
    modelId: t.modelId ?? models.active().modelId,
  });

  /** The artifacts of a model served here. */
  function artifactsOf(modelId: string) {
    const runtime = models.get(modelId);
    if (!runtime) throw new Error(`model ${modelId} is not served on replica ${settings.replicaId}`);
    return runtime.artifacts;
  }

  const publish: PublishIndex = async (asked, outcome, guard) => {
    const target = withModel(asked);
    const { modelId, version, imageType } = target;
    const published = await artifactsOf(modelId).publish(version, imageType, outcome.manifest);
    await record(target, outcome.manifest, published);
    await repo.activate(
      { indexVersionId: published.indexVersionId, activatedBy: settings.replicaId, reason: "rebuilt" },
      { guard },
    );
    active.set(key(modelId, version, imageType), {
      modelId,
      matcherVersion: version,
      imageType,
      indexVersionId: published.indexVersionId,
      previousIndexVersionId: null,
      activatedAt: new Date().toISOString(),
      activatedBy: settings.replicaId,
      reason: "rebuilt",
    });
    await applyRetention(target).catch((err) => log.warn({ err }, "retention of old index versions failed"));
    return published.indexVersionId;
  };

  async function record(
    target: IndexTarget,
    m: IndexManifest,
    published: Awaited<ReturnType<ModelRuntime["artifacts"]["publish"]>>,
  ) {
    await repo.recordIndexVersion({
      indexVersionId: published.indexVersionId,
      matcherVersion: target.version,
      imageType: target.imageType,
      modelId: m.modelId,
      factory: m.factory,
      count: m.count,
      recallAt10: m.recall?.recallAt10 ?? null,
      galleryFingerprint: m.galleryFingerprint,
      indexSha256: m.indexSha256,
      artifactKey: published.key,
      artifactSha256: published.listSha256,
      artifactBytes: published.bytes,
      builtAt: m.builtAt,
      builtBy: settings.replicaId,
    });
  }

  return {
    replicaId: settings.replicaId,
    publish,
    sync,
    beat,
    readiness,
    isDatabaseReachable: () => databaseReachable,
    /** The active pointer of one index (of the active model unless `modelId` names another), as last read. */
    activeOf: (version: MatcherVersion, imageType: ImageType, modelId = models.active().modelId) =>
      active.get(key(modelId, version, imageType)),

    /**
     * Publishes the index persisted in this replica's local cache for `target` (a cache from before
     * replicas, or one an operator tool wrote) and activates it; with `onlyIfNone`, only when no replica
     * activated one first.
     * @returns its index version id, or undefined when the cache holds none.
     */
    async publishLocal(
      asked: IndexTarget,
      { onlyIfNone = false, reason }: { onlyIfNone?: boolean; reason: string },
    ): Promise<string | undefined> {
      const target = withModel(asked);
      const matcher = models.matcher(target) as Matcher;
      return runExclusive(async () => {
        const m = await matcher.persistedManifest(target.imageType);
        if (!m) return undefined;
        const published = await artifactsOf(target.modelId).publish(target.version, target.imageType, m);
        await record(target, m, published);
        await repo.activate(
          { indexVersionId: published.indexVersionId, activatedBy: settings.replicaId, reason },
          { onlyIfNone },
        );
        return published.indexVersionId;
      });
    },

    /**
     * Activates an earlier version of its index for the whole deployment (rollback), by an admin.
     * @throws DomainError NOT_FOUND (no such version or its files were deleted), BAD_USER_INPUT (built with
     * another model than this replica's), SERVICE_UNAVAILABLE (database down).
     */
    async activate(indexVersionId: string, reason: string, by: string): Promise<IndexVersionRecord> {
      let record: IndexVersionRecord | undefined;
      try {
        record = await repo.indexVersion(indexVersionId);
      } catch (err) {
        throw errors.serviceUnavailable(
          `The database does not answer (${(err as Error).message}); retry when it is back.`,
          err,
        );
      }
      if (!record || record.deletedAt)
        throw errors.notFound(
          record
            ? `Index version ${indexVersionId} was deleted from the bucket by the retention policy (INDEX_VERSIONS_KEPT).`
            : `No index version ${indexVersionId}; list them with status { indexVersions { id } }.`,
        );
      if (!models.get(record.modelId))
        throw errors.badInput(
          `Index version ${indexVersionId} was built with model ${record.modelId}, which is not registered (or was retired); the replicas run ${models
            .all()
            .map((r) => r.modelId)
            .join(", ")}.`,
        );
      const matcher = models.matcher({
        modelId: record.modelId,
        version: record.matcherVersion,
        imageType: "defect",
      });
      if (!matcher)
        throw errors.badInput(`Matcher ${record.matcherVersion} is not configured on this deployment.`);
      try {
        await repo.activate({ indexVersionId, activatedBy: by, reason });
      } catch (err) {
        throw errors.serviceUnavailable(
          `The activation could not be written: ${(err as Error).message}`,
          err,
        );
      }
      await sync();
      return record;
    },

    /**
     * Applies the gallery change log now (after an edit this replica answered, so the caller's next
     * search sees it).
     */
    syncGallery,

    /** Live replicas (heartbeat within REPLICA_STALE_MS). */
    liveReplicas: () => repo.liveReplicas(settings.staleMs),

    /** Starts the poll and the NOTIFY listener. */
    start() {
      void listen();
      timer = setInterval(() => void sync(), settings.pollMs);
      timer.unref();
      void beat();
      beatTimer = setInterval(() => void beat(), Math.min(settings.pollMs, settings.staleMs / 3));
      beatTimer.unref();
    },

    async close(): Promise<void> {
      closed = true;
      clearInterval(timer);
      clearInterval(beatTimer);
      await syncing?.catch(() => undefined);
      await listener?.end().catch(() => undefined);
      await repo.removeReplica(settings.replicaId).catch(() => undefined);
    },
  };
}

/** The replica's type, derived from its factory. */
export type Replica = ReturnType<typeof createReplica>;

/** Default replica id: the host name (a pod's name under Kubernetes) and the process id. */
export const defaultReplicaId = () => `${hostname()}-${process.pid}`;
