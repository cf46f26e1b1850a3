import type { MatcherVersion } from "../shared/types.js";

/**
 * The feature flag choosing the active matcher. Held in memory: switching takes effect on the next
 * request and lasts until the process restarts, when MATCHER_VERSION / USE_INDEX_V2 apply again.
 */
export function createMatcherVersionFlag(initial: MatcherVersion) {
  let active = initial;
  let changedAt: string | null = null;
  return {
    get: (): MatcherVersion => active,
    /** When the flag was last switched at runtime (ISO 8601), or null. */
    changedAt: () => changedAt,
    set(version: MatcherVersion) {
      active = version;
      changedAt = new Date().toISOString();
    },
  };
}

/** The flag's type, derived from its factory. */
export type MatcherVersionFlag = ReturnType<typeof createMatcherVersionFlag>;
