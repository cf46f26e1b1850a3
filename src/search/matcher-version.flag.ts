import type { MatcherVersion } from "../shared/types.js";

/** A switch of the flag as the database recorded it. */
export interface MatcherVersionDecision {
  version: MatcherVersion;
  /** ISO 8601. */
  setAt: string;
}

/**
 * This replica's view of the feature flag choosing the active matcher. The decision lives in PostgreSQL
 * (`matcher_version_changes`); the deployment's poll and NOTIFY listener {@link apply} it here, so a search
 * reads the flag without a query. Until the database has answered once, MATCHER_VERSION applies.
 */
export function createMatcherVersionFlag(initial: MatcherVersion) {
  let active = initial;
  let changedAt: string | null = null;
  return {
    get: (): MatcherVersion => active,
    /** When the active decision was recorded (ISO 8601), or null before the database answered. */
    changedAt: () => changedAt,
    /** Applies the database's newest decision. */
    apply(decision: MatcherVersionDecision) {
      active = decision.version;
      changedAt = decision.setAt;
    },
  };
}

/** The flag's type, derived from its factory. */
export type MatcherVersionFlag = ReturnType<typeof createMatcherVersionFlag>;
