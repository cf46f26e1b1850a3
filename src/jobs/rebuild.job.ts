import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { GalleryProgress } from "../matchers/gallery-source.js";
import type { Matcher } from "../matchers/matcher.js";
import { errors } from "../shared/errors.js";
import type { ImageType, MatcherVersion } from "../shared/types.js";

/** Lifecycle of a rebuild task. */
export type RebuildStatus = "running" | "succeeded" | "failed";

/** One index: a matcher version and an image type. */
export interface IndexTarget {
  version: MatcherVersion;
  imageType: ImageType;
}

/** A rebuild of one or more indexes, visible to operators while it runs. */
export interface RebuildTask {
  id: string;
  targets: IndexTarget[];
  trigger: "admin" | "startup";
  status: RebuildStatus;
  /** Index being rebuilt now, while running. */
  current: IndexTarget | null;
  /** Summed over the indexes handled so far. */
  progress: GalleryProgress;
  /** ISO 8601. */
  startedAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  /** Why the task failed; the previous index keeps being served. */
  error: string | null;
  /** Gallery images left out (first 50), with reasons. */
  failures: { item: string; reason: string }[];
  /** Per index: vectors in the new index and how long the swap took (ms). */
  results: (IndexTarget & { count: number; swapMs: number })[];
}

/** Tasks kept in memory for status; older ones are dropped. */
const HISTORY = 20;
const MAX_FAILURES_SHOWN = 50;

/**
 * Runs index rebuilds in the background, one at a time per process: a rebuild embeds images and holds
 * a whole gallery in memory, and two at once would only compete for the same two cores.
 */
export function createRebuildJobs({
  matchers,
  logger,
  onFinished = () => {},
}: {
  matchers: ReadonlyMap<MatcherVersion, Matcher>;
  logger: Logger;
  /** Called once per task when it ends, succeeded or failed (metrics). */
  onFinished?: (task: Readonly<RebuildTask>) => void;
}) {
  const tasks: RebuildTask[] = [];
  let running: Promise<void> | undefined;

  async function run(task: RebuildTask) {
    const t0 = performance.now();
    const done = { total: 0, processed: 0, newlyEmbedded: 0, failed: 0 };
    try {
      for (const target of task.targets) {
        const { version, imageType } = target;
        const matcher = matchers.get(version);
        if (!matcher) throw new Error(`matcher ${version} is not configured`);
        task.current = target;
        const outcome = await matcher.rebuild(imageType, (p) => {
          task.progress = {
            total: done.total + p.total,
            processed: done.processed + p.processed,
            newlyEmbedded: done.newlyEmbedded + p.newlyEmbedded,
            failed: done.failed + p.failed,
          };
        });
        Object.assign(done, task.progress);
        task.results.push({ version, imageType, count: outcome.manifest.count, swapMs: outcome.swapMs });
        task.failures.push(...outcome.failures.slice(0, MAX_FAILURES_SHOWN - task.failures.length));
      }
      task.status = "succeeded";
    } catch (err) {
      task.status = "failed";
      task.error = `${(err as Error).message}. The previous index is still being served.`;
      logger.error({ err, taskId: task.id }, "index rebuild failed");
    } finally {
      task.current = null;
      task.finishedAt = new Date().toISOString();
      task.durationMs = performance.now() - t0;
      logger.info(
        {
          taskId: task.id,
          status: task.status,
          durationMs: Math.round(task.durationMs),
          progress: task.progress,
        },
        "index rebuild finished",
      );
      onFinished(task);
    }
  }

  return {
    /**
     * Starts a rebuild in the background and returns its task at once.
     * @throws DomainError REBUILD_IN_PROGRESS when one is running; BAD_USER_INPUT when `version` has no gallery.
     */
    start({ targets, trigger }: { targets: IndexTarget[]; trigger: RebuildTask["trigger"] }): RebuildTask {
      const active = tasks.find((t) => t.status === "running");
      if (active) throw errors.rebuildInProgress(active.id);
      for (const { version } of targets) {
        if (!matchers.has(version)) {
          throw errors.badInput(
            `Matcher ${version} has no gallery configured${version === "v1" ? " (set V1_GALLERY_DIR)" : ""}.`,
          );
        }
      }
      const task: RebuildTask = {
        id: randomUUID(),
        targets,
        trigger,
        status: "running",
        current: null,
        progress: { total: 0, processed: 0, newlyEmbedded: 0, failed: 0 },
        startedAt: new Date().toISOString(),
        finishedAt: null,
        durationMs: null,
        error: null,
        failures: [],
        results: [],
      };
      tasks.unshift(task);
      tasks.splice(HISTORY);
      logger.info({ taskId: task.id, targets, trigger }, "index rebuild started");
      running = run(task).finally(() => {
        running = undefined;
      });
      return task;
    },

    /** A task by id, if still in the history. */
    get: (id: string) => tasks.find((t) => t.id === id),

    /** Recent tasks, newest first. */
    list: (): readonly RebuildTask[] => tasks,

    /** Resolves when no rebuild is running (for shutdown and tests). */
    async whenIdle(): Promise<void> {
      while (running) await running;
    },
  };
}

/** The rebuild job runner's type, derived from its factory. */
export type RebuildJobs = ReturnType<typeof createRebuildJobs>;
