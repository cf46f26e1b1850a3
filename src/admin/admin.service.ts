import type { Replica } from "../deployment/replica.js";
import type {
  ActiveIndex,
  IndexVersionRecord,
  MatcherVersionChange,
  ReplicaRecord,
  ServingStateRepository,
} from "../deployment/serving-state.repository.js";
import type { RebuildJobs, RebuildTask } from "../jobs/rebuild.job.js";
import type { IndexState, Matcher } from "../matchers/matcher.js";
import type { MatcherVersionFlag } from "../search/matcher-version.flag.js";
import { databaseCall, errors } from "../shared/errors.js";
import { IMAGE_TYPES, type ImageType, MATCHER_VERSIONS, type MatcherVersion } from "../shared/types.js";

/** One index as status shows it: what this replica serves, and the deployment's active version. */
export interface IndexStatusSnapshot extends IndexState {
  activeIndexVersionId: string | null;
  activatedAt: string | null;
}

/** A published index version, with whether it is active. */
export type IndexVersionView = IndexVersionRecord & { version: MatcherVersion; active: boolean };

/** What the status query shows. */
export interface ServiceStatusSnapshot {
  activeVersion: MatcherVersion;
  activeVersionChangedAt: string | null;
  databaseReachable: boolean;
  databaseError: string | null;
  model: { modelId: string; preset: string; dimension: number; inputSize: number };
  /** The replica that answered. */
  replicaId: string;
  indexes: IndexStatusSnapshot[];
  rebuildTasks: readonly RebuildTask[];
  replicas: ReplicaRecord[];
  matcherVersionHistory: MatcherVersionChange[];
  indexVersions: IndexVersionView[];
}

/**
 * Operator use cases: status, rebuilds, the matcher switch and index activation. Authorisation is the
 * caller's job (the GraphQL layer checks the admin token before calling the mutating methods). Every
 * write goes to PostgreSQL, so it holds for every replica and survives restarts.
 */
export function createAdminService({
  matchers,
  flag,
  jobs,
  replica,
  state,
  model,
  checkDatabase,
}: {
  matchers: ReadonlyMap<MatcherVersion, Matcher>;
  flag: MatcherVersionFlag;
  jobs: RebuildJobs;
  replica: Replica;
  state: ServingStateRepository;
  /** The active embedding model (it changes with a promotion). */
  model: () => ServiceStatusSnapshot["model"];
  /** Resolves null when the database answers, else the reason. */
  checkDatabase: () => Promise<string | null>;
}) {
  return {
    async status(): Promise<ServiceStatusSnapshot> {
      const databaseError = await checkDatabase();
      const reachable = databaseError === null;
      const [rebuildTasks, replicas, matcherVersionHistory, versions] = reachable
        ? await Promise.all([
            jobs.list(),
            replica.liveReplicas(),
            state.matcherVersionHistory(),
            state.indexVersions(),
          ]).catch(() => [[], [], [], []] as const)
        : ([[], [], [], []] as const);
      const indexes = MATCHER_VERSIONS.flatMap((v) => {
        const m = matchers.get(v);
        return m
          ? IMAGE_TYPES.map((t): IndexStatusSnapshot => {
              const a: ActiveIndex | undefined = replica.activeOf(v, t);
              return {
                ...m.state(t),
                activeIndexVersionId: a?.indexVersionId ?? null,
                activatedAt: a?.activatedAt ?? null,
              };
            })
          : [];
      });
      const activeIds = new Set(indexes.map((i) => i.activeIndexVersionId));
      return {
        activeVersion: flag.get(),
        activeVersionChangedAt: flag.changedAt(),
        databaseReachable: reachable,
        databaseError,
        model: model(),
        replicaId: replica.replicaId,
        indexes,
        rebuildTasks,
        replicas: [...replicas],
        matcherVersionHistory: [...matcherVersionHistory],
        indexVersions: versions.map((v) => ({
          ...v,
          version: v.matcherVersion,
          active: activeIds.has(v.indexVersionId),
        })),
      };
    },

    /**
     * Queues a rebuild of `imageType` (or both) for `version` (default: the active one), for the deployment.
     * @throws DomainError REBUILD_IN_PROGRESS, BAD_USER_INPUT, SERVICE_UNAVAILABLE.
     */
    rebuild(
      imageType: ImageType | "all",
      version?: MatcherVersion | null,
      by = "admin",
    ): Promise<RebuildTask> {
      const v = version ?? flag.get();
      const types = imageType === "all" ? [...IMAGE_TYPES] : [imageType];
      return databaseCall("The rebuild could not be queued", () =>
        jobs.start({
          targets: types.map((t) => ({ version: v, imageType: t })),
          trigger: "admin",
          requestedBy: by,
        }),
      );
    },

    /**
     * Switches the active matcher for every replica (within STATE_POLL_MS) and records why and by whom.
     * @throws DomainError BAD_USER_INPUT (no gallery for it, or an empty reason), SERVICE_UNAVAILABLE.
     */
    async setActiveVersion(version: MatcherVersion, reason: string | null | undefined, by: string) {
      if (!matchers.has(version))
        throw errors.badInput(
          `Matcher ${version} has no gallery configured${version === "v1" ? " (set V1_GALLERY_DIR)" : ""}.`,
        );
      const why = reason?.trim() || "no reason given";
      if (why.length > 500) throw errors.badInput("reason must be at most 500 characters.");
      await databaseCall("The matcher switch was not applied", async () => {
        await state.setMatcherVersion({ version, reason: why, setBy: by, replicaId: replica.replicaId });
        const decision = await state.activeMatcherVersion();
        if (decision) flag.apply(decision);
      });
    },

    /**
     * Activates an index version (rollback to an earlier one, or forward again) for every replica.
     * @throws DomainError NOT_FOUND, BAD_USER_INPUT, SERVICE_UNAVAILABLE.
     */
    activateIndexVersion(id: string, reason: string | null | undefined, by: string) {
      if (!/^[0-9a-f]{64}$/.test(id))
        throw errors.badInput(`An index version id is 64 lowercase hex digits; got '${id.slice(0, 70)}'.`);
      return replica
        .activate(id, reason?.trim() || "activated by an admin", by)
        .then((v): IndexVersionView => ({ ...v, version: v.matcherVersion, active: true }));
    },

    /** A task by id, from any replica. */
    task: (id: string) => databaseCall("The rebuild task could not be read", () => jobs.get(id)),
  };
}

/** The admin service's type, derived from its factory. */
export type AdminService = ReturnType<typeof createAdminService>;
