import type { Logger } from "pino";
import type { AppConfig } from "../config/config.js";
import type { Matcher } from "../matchers/matcher.js";
import { IMAGE_TYPES, type MatcherVersion } from "../shared/types.js";
import type { IndexTarget, RebuildJobs } from "./rebuild.job.js";

/**
 * The startup policy (STARTUP_REBUILD): load each persisted index that still matches the model, index
 * type and (if-needed) the gallery; rebuild the others in the background. With the database down, V2
 * serves its persisted index as FALLBACK whatever it was built from.
 * @returns the indexes queued for a rebuild.
 */
export async function startIndexes({
  matchers,
  jobs,
  policy,
  databaseDown,
  logger,
}: {
  matchers: ReadonlyMap<MatcherVersion, Matcher>;
  jobs: RebuildJobs;
  policy: AppConfig["index"]["startupRebuild"];
  databaseDown: boolean;
  logger: Logger;
}): Promise<IndexTarget[]> {
  const toBuild: IndexTarget[] = [];
  for (const [version, matcher] of matchers) {
    for (const imageType of IMAGE_TYPES) {
      if (version === "v2" && databaseDown) {
        await matcher.loadPersisted(imageType, "fallback", false);
        continue;
      }
      const loaded =
        policy !== "always" && (await matcher.loadPersisted(imageType, "loaded", policy === "if-needed"));
      if (!loaded && policy !== "never") toBuild.push({ version, imageType });
    }
  }
  if (toBuild.length > 0) {
    logger.info({ targets: toBuild }, "indexes to build at startup");
    jobs.start({ targets: toBuild, trigger: "startup" });
  }
  return toBuild;
}
