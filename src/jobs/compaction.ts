import type { Logger } from "pino";
import type { Matcher } from "../matchers/matcher.js";
import { isDomainError } from "../shared/errors.js";
import { IMAGE_TYPES, type MatcherVersion } from "../shared/types.js";
import type { IndexTarget, RebuildJobs } from "./rebuild.job.js";

/** When the changes served beside an index are folded into a rebuilt one. */
export interface CompactionSettings {
  /** GALLERY_COMPACTION_SHARE: pending changes (added + left-out images) as a share of the index (0-1). */
  share: number;
  /** GALLERY_COMPACTION_MIN: never fewer pending changes than this (small galleries). */
  minChanges: number;
  /** GALLERY_COMPACTION_MAX: always at this many (the delta is searched exactly, beside the index). */
  maxChanges: number;
}

/** Queueing the same compaction again sooner than this is pointless: the first one is still running. */
const REQUEUE_AFTER_MS = 60_000;

/**
 * Pending changes at which an index of `count` images is compacted:
 * max(minChanges, min(share x count, maxChanges)).
 */
export const compactionThreshold = (count: number, s: CompactionSettings) =>
  Math.max(s.minChanges, Math.min(s.share * count, s.maxChanges));

/**
 * The compaction policy: after each read of the change log, an index whose pending changes passed
 * {@link compactionThreshold} is queued for a rebuild (trigger `compaction`), off the serving path like any
 * rebuild; the rebuild also refits the adapted space and the type prior on the labels as they are then.
 * One queue for the deployment: a replica that finds a rebuild open leaves it be.
 */
export function createCompactionPolicy({
  matchers,
  jobs,
  settings,
  logger,
}: {
  matchers: ReadonlyMap<MatcherVersion, Matcher>;
  jobs: RebuildJobs;
  settings: CompactionSettings;
  logger: Logger;
}) {
  let queuedAt = 0;
  return {
    /** Indexes whose pending changes passed the threshold. */
    due(): IndexTarget[] {
      const out: IndexTarget[] = [];
      for (const [version, matcher] of matchers)
        for (const imageType of IMAGE_TYPES) {
          const s = matcher.state(imageType);
          if (!s.ready || s.changeSeq === null) continue;
          const pending = s.deltaAdded + s.deltaRemoved;
          const built = s.count - s.deltaAdded + s.deltaRemoved;
          if (pending > 0 && pending >= compactionThreshold(built, settings))
            out.push({ version, imageType });
        }
      return out;
    },

    /** Queues a compaction when one is due (at most once a minute from this replica). */
    async check(): Promise<void> {
      const targets = this.due();
      if (targets.length === 0 || Date.now() - queuedAt < REQUEUE_AFTER_MS) return;
      queuedAt = Date.now();
      try {
        if (await jobs.open()) return;
        await jobs.start({ targets, trigger: "compaction" });
        logger.info({ targets }, "gallery changes passed the compaction threshold; rebuild queued");
      } catch (err) {
        if (isDomainError(err) && err.code === "REBUILD_IN_PROGRESS") return;
        throw err;
      }
    },
  };
}
