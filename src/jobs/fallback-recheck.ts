import type { Logger } from "pino";
import type { DbClient } from "../db/db.client.js";
import type { Matcher } from "../matchers/matcher.js";
import { IMAGE_TYPES, type ImageType, type MatcherVersion } from "../shared/types.js";
import type { RebuildJobs } from "./rebuild.job.js";

/**
 * While a V2 index is served as FALLBACK (the database was down when it was loaded), checks every
 * `intervalMs` whether the database answers again. When it does: applies migrations (they could not run
 * at startup), reloads the persisted index if it still matches the gallery (then it is LOADED), and
 * rebuilds it otherwise.
 * @returns a function that stops the checks (and waits for one in progress).
 */
export function watchFallbackIndexes({
  matchers,
  jobs,
  db,
  intervalMs,
  logger,
}: {
  matchers: ReadonlyMap<MatcherVersion, Matcher>;
  jobs: RebuildJobs;
  db: DbClient;
  intervalMs: number;
  logger: Logger;
}): () => Promise<void> {
  const matcher = matchers.get("v2");
  let running: Promise<void> | undefined;
  const check = async () => {
    const fallbacks = IMAGE_TYPES.filter((t) => matcher?.state(t).source === "fallback");
    if (!matcher || fallbacks.length === 0) return;
    try {
      if ((await db.unreachableReason(Math.min(2000, intervalMs))) !== null) return;
      await db.migrate();
      const stale: ImageType[] = [];
      for (const imageType of fallbacks) {
        if (!(await matcher.loadPersisted(imageType, "loaded", true))) stale.push(imageType);
      }
      logger.info({ reloaded: fallbacks.filter((t) => !stale.includes(t)), stale }, "database is back");
      if (stale.length > 0 && !jobs.list().some((t) => t.status === "running")) {
        jobs.start({ targets: stale.map((imageType) => ({ version: "v2", imageType })), trigger: "startup" });
      }
    } catch (err) {
      logger.warn({ err }, "re-checking the FALLBACK indexes failed; trying again later");
    }
  };
  const timer = setInterval(() => {
    running ??= check().finally(() => {
      running = undefined;
    });
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
