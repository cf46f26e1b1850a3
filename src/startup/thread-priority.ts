import { readdirSync, readlinkSync } from "node:fs";
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
  /**
   * Ends the periodic scans and gives the threads it lowered their earlier priority back where the process
   * may (raising a priority needs CAP_SYS_NICE, or RLIMIT_NICE room; without, they stay lowered), so that
   * what the process does after serving (a benchmark's next part, a test's next case) runs as before.
   */
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
 * Does nothing when `nice` is 0, off Linux, or when `/proc` is not this process's own PID namespace (the
 * thread ids would name other processes). Meant for a process that serves: work the workers and the main
 * thread share (ingestion, a first start) loses throughput when the main thread comes first.
 * @param nice - 0 (off) to 19 (lowest priority).
 * @param logger - told once when a thread's priority cannot be set (other than a thread that ended).
 * @param intervalMs - time between scans (ms).
 * @returns the running keeper; the first scan has run when it returns.
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
  const off = { scan: () => 0, stop: () => {} };
  if (nice === 0 || process.platform !== "linux" || !ownProcNamespace()) return off;
  let warned = false;
  const lowered = new Map<number, number>();
  const scan = () => {
    let count = 0;
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
        const before = os.getPriority(tid);
        if (before >= nice) continue;
        os.setPriority(tid, nice);
        if (!lowered.has(tid)) lowered.set(tid, before);
        count++;
      } catch (err) {
        // A thread that ended between the listing and the call (ESRCH) is no loss; anything else is said once.
        if ((err as { info?: { code?: string } }).info?.code !== "ESRCH" && !warned) {
          warned = true;
          logger.warn({ err, tid, nice }, "a worker thread's priority could not be lowered");
        }
      }
    }
    return count;
  };
  scan();
  const timer = setInterval(scan, intervalMs);
  timer.unref();
  return {
    scan,
    stop: () => {
      clearInterval(timer);
      for (const [tid, before] of lowered) {
        try {
          os.setPriority(tid, before);
        } catch {
          // ended, or not ours to raise (no CAP_SYS_NICE): it stays lowered
        }
      }
      lowered.clear();
    },
  };
}

/** Whether `/proc/self` is this process (not a host's `/proc` seen from a container's PID namespace). */
function ownProcNamespace(): boolean {
  try {
    return readlinkSync("/proc/self") === String(process.pid);
  } catch {
    return false;
  }
}
