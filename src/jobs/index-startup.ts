import type { Logger } from "pino";
import type { AppConfig } from "../config/config.js";
import type { Replica } from "../deployment/replica.js";
import type { Matcher } from "../matchers/matcher.js";
import { isDomainError } from "../shared/errors.js";
import { IMAGE_TYPES, type MatcherVersion } from "../shared/types.js";
import type { IndexTarget, RebuildJobs } from "./rebuild.job.js";

/**
 * With the database down at startup: V2 serves its local cache as FALLBACK whatever it was built from, V1
 * its own; the replica follows the active versions once the database answers.
 */
export async function startFromLocalCache(matchers: ReadonlyMap<MatcherVersion, Matcher>): Promise<void> {
  for (const [version, matcher] of matchers)
    for (const imageType of IMAGE_TYPES)
      await matcher.loadPersisted(imageType, version === "v2" ? "fallback" : "loaded", false);
}

/**
 * The startup policy (STARTUP_REBUILD), once the replica has followed the active versions (from its local
 * cache or the bucket). An index with no active version yet is published from the local cache when that
 * still matches the gallery, else queued for the deployment's rebuild; with `if-needed`, an active version
 * built from an older gallery is served and rebuilt; `always` rebuilds everything; `never` nothing. Ten
 * replicas starting at once queue one rebuild: the others find it open.
 * @returns the indexes queued for a rebuild by this replica.
 */
export async function planStartup({
  matchers,
  replica,
  jobs,
  policy,
  logger,
  replan = true,
}: {
  matchers: ReadonlyMap<MatcherVersion, Matcher>;
  replica: Replica;
  jobs: RebuildJobs;
  policy: AppConfig["index"]["startupRebuild"];
  logger: Logger;
  /** Plan again once after a rebuild another replica queued ends (see below). */
  replan?: boolean;
}): Promise<IndexTarget[]> {
  const toBuild: IndexTarget[] = [];
  for (const [version, matcher] of matchers) {
    for (const imageType of IMAGE_TYPES) {
      const target = { version, imageType };
      const active = replica.activeOf(version, imageType);
      if (policy === "always") {
        toBuild.push(target);
      } else if (!active) {
        if (await matcher.loadPersisted(imageType, "loaded", policy === "if-needed")) {
          await replica.publishLocal(target, {
            onlyIfNone: true,
            reason: "published from the local cache at startup",
          });
        } else if (policy !== "never") toBuild.push(target);
      } else if (!matcher.state(imageType).ready && policy !== "never") {
        // The active version cannot be served here (another model or index type, or its artifact is gone).
        toBuild.push(target);
      } else if (policy === "if-needed") {
        // Changes in the gallery change log are replayed on the served index (and compacted past
        // GALLERY_COMPACTION_SHARE); only a change the log does not explain needs a rebuild.
        if (await matcher.galleryChangedOutsideLog(imageType)) toBuild.push(target);
      }
    }
  }
  if (toBuild.length === 0) return [];
  try {
    await jobs.start({ targets: toBuild, trigger: "startup" });
    logger.info({ targets: toBuild }, "indexes queued for a rebuild at startup");
    return toBuild;
  } catch (err) {
    if (isDomainError(err) && err.code === "REBUILD_IN_PROGRESS") {
      logger.info({ targets: toBuild }, "a rebuild is already queued by another replica; following it");
      // That rebuild may have read the gallery before this replica's own import finished: once it ends,
      // plan again (once), so a gallery that changed meanwhile is rebuilt.
      const open = await jobs.open();
      if (open && policy === "if-needed" && replan)
        void jobs
          .untilDone(open.id, 1000)
          .then(() => replica.sync())
          .then(() => planStartup({ matchers, replica, jobs, policy, logger, replan: false }))
          .catch((e) => logger.warn({ err: e }, "planning again after the followed rebuild failed"));
      return [];
    }
    throw err;
  }
}
