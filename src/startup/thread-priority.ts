import { readdirSync } from "node:fs";
import os from "node:os";
import type { Logger } from "pino";

/** Time between two scans for threads started since the last one (ms). */
export const THREAD_SCAN_INTERVAL_MS = 1000;

/** What {@link lowerWorkerThreadPriority} keeps running. */
export interface WorkerThreadPriority {
  /**
   * Lowers every thread found now but the main one to the configured priority.
   * @returns how many threads it lowered.
   */
  scan(): number;
  /** Ends the periodic scans. Lowered threads keep their priority: raising it back needs CAP_SYS_NICE. */
  stop(): void;
}

/**
 * Keeps every thread of this process but the main one (the event loop's) at Linux scheduling priority
 * `nice` (setpriority(2) on a thread id, as `renice -n` on a thread does): the inference and FAISS workers
 * with their onnxruntime and OpenMP threads, libuv's pool (sharp's decoding, file reads), libvips' workers
 * and V8's helper threads. Under load these keep both cores busy; at nice 0 the event loop waits its turn
 * behind them, which is where its delay came from at concurrency 16 (docs/benchmarks.md, sixth pass). At
 * nice 10 a thread's CFS weight is 110 against the event loop's 1024 (kernel `sched_prio_to_weight`), so the
 * event loop runs as soon as it has work, and the workers take every cycle it leaves.
 *
 * Threads inherit their creator's priority, but most are created by the main thread, some lazily (libuv's
 * pool on its first use, libvips' workers as pipelines need them), so a scan of `/proc/self/task` runs now
 * and every {@link THREAD_SCAN_INTERVAL_MS}. A thread already at `nice` or lower priority is left alone.
 * Does nothing when `nice` is 0 or off Linux. Meant for a process that serves: work the workers and the main
 * thread share (ingestion, a first start) loses throughput when the main thread comes first.
 * @param nice - 0 (off) to 19 (lowest priority).
 */
export function lowerWorkerThreadPriority({
  nice,
  logger,
  intervalMs = THREAD_SCAN_INTERVAL_MS,
}: {
  nice: number;
  logger: Logger;
  intervalMs?: number;
}): WorkerThreadPriority {
  if (nice === 0 || process.platform !== "linux") return { scan: () => 0, stop: () => {} };
  let warned = false;
  const scan = () => {
    let lowered = 0;
    let tids: string[];
    try {
      tids = readdirSync("/proc/self/task");
    } catch {
      return 0;
    }
    for (const entry of tids) {
      const tid = Number(entry);
      if (tid === process.pid) continue;
      try {
        if (os.getPriority(tid) >= nice) continue;
        os.setPriority(tid, nice);
        lowered++;
      } catch (err) {
        // A thread that ended between the listing and the call (ESRCH) is no loss; anything else is said once.
        if ((err as { info?: { code?: string } }).info?.code !== "ESRCH" && !warned) {
          warned = true;
          logger.warn({ err, tid, nice }, "a worker thread's priority could not be lowered");
        }
      }
    }
    return lowered;
  };
  scan();
  const timer = setInterval(scan, intervalMs);
  timer.unref();
  return { scan, stop: () => clearInterval(timer) };
}
