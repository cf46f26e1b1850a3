import type { RebuildJobs, RebuildTask } from "../jobs/rebuild.job.js";
import type { IndexState, Matcher } from "../matchers/matcher.js";
import type { MatcherVersionFlag } from "../search/matcher-version.flag.js";
import { IMAGE_TYPES, type ImageType, MATCHER_VERSIONS, type MatcherVersion } from "../shared/types.js";

/** What the status query shows. */
export interface ServiceStatusSnapshot {
  activeVersion: MatcherVersion;
  activeVersionChangedAt: string | null;
  databaseReachable: boolean;
  databaseError: string | null;
  model: { modelId: string; preset: string; dimension: number; inputSize: number };
  indexes: IndexState[];
  rebuildTasks: readonly RebuildTask[];
}

/**
 * Operator use cases: status, rebuilds and the matcher switch. Authorisation is the caller's job
 * (the GraphQL layer checks the admin token before calling the mutating methods).
 */
export function createAdminService({
  matchers,
  flag,
  jobs,
  model,
  checkDatabase,
}: {
  matchers: ReadonlyMap<MatcherVersion, Matcher>;
  flag: MatcherVersionFlag;
  jobs: RebuildJobs;
  model: ServiceStatusSnapshot["model"];
  /** Resolves null when the database answers, else the reason. */
  checkDatabase: () => Promise<string | null>;
}) {
  return {
    async status(): Promise<ServiceStatusSnapshot> {
      const databaseError = await checkDatabase();
      const indexes = MATCHER_VERSIONS.flatMap((v) => {
        const m = matchers.get(v);
        return m ? IMAGE_TYPES.map((t) => m.state(t)) : [];
      });
      return {
        activeVersion: flag.get(),
        activeVersionChangedAt: flag.changedAt(),
        databaseReachable: databaseError === null,
        databaseError,
        model,
        indexes,
        rebuildTasks: jobs.list(),
      };
    },

    /**
     * Starts a background rebuild of `imageType` (or both) for `version` (default: the active one).
     * @throws DomainError REBUILD_IN_PROGRESS, BAD_USER_INPUT.
     */
    rebuild(imageType: ImageType | "all", version?: MatcherVersion | null): RebuildTask {
      const v = version ?? flag.get();
      const types = imageType === "all" ? [...IMAGE_TYPES] : [imageType];
      return jobs.start({ targets: types.map((t) => ({ version: v, imageType: t })), trigger: "admin" });
    },

    /** Switches the active matcher for every following request. */
    setActiveVersion(version: MatcherVersion) {
      flag.set(version);
    },

    task: (id: string) => jobs.get(id),
  };
}

/** The admin service's type, derived from its factory. */
export type AdminService = ReturnType<typeof createAdminService>;
