import os from "node:os";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { lowerWorkerThreadPriority } from "../src/startup/thread-priority.js";
import { testLogger } from "./support/services.js";
import { niceByThread } from "./support/threads.js";

/** A worker thread that stays alive until terminated. */
async function startWorker(): Promise<Worker> {
  const worker = new Worker(
    "setInterval(() => {}, 1000); require('node:worker_threads').parentPort.postMessage('up');",
    {
      eval: true,
    },
  );
  await new Promise((resolve) => worker.once("message", resolve));
  return worker;
}

/** The process's own nice value when the test started (a run under `nice` starts above 0). */
const BASE = niceByThread().get(process.pid) ?? 0;
/** A priority below the base that an unprivileged process may still set. */
const TARGET = Math.min(BASE + 5, 19);
/** Raising a priority back needs CAP_SYS_NICE; tests run as root where they can check it. */
const CAN_RAISE = process.getuid?.() === 0;

describe.runIf(process.platform === "linux" && TARGET > BASE)("worker thread priority", () => {
  const workers: Worker[] = [];
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.terminate();
  });

  it("lowers every thread but the main one, threads started later within a scan, and gives them back", async () => {
    workers.push(await startWorker());
    const atStart = niceByThread();
    const priority = lowerWorkerThreadPriority({ nice: TARGET, logger: testLogger, intervalMs: 50 });
    let lowered: number[];
    try {
      const now = niceByThread();
      expect(now.get(process.pid)).toBe(BASE);
      const others = [...now].filter(([tid]) => tid !== process.pid);
      expect(others.length).toBeGreaterThan(2);
      for (const [tid, nice] of others) expect(nice, `thread ${tid}`).toBeGreaterThanOrEqual(TARGET);
      lowered = others.filter(([tid]) => (atStart.get(tid) ?? TARGET) < TARGET).map(([tid]) => tid);
      expect(lowered.length).toBeGreaterThan(2);

      const before = new Set(now.keys());
      workers.push(await startWorker());
      const started = [...niceByThread().keys()].filter((tid) => !before.has(tid));
      expect(started.length).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 200));
      const later = niceByThread();
      for (const tid of started.filter((t) => later.has(t)))
        expect(later.get(tid), `thread ${tid}`).toBe(TARGET);
      expect(later.get(process.pid)).toBe(BASE);
    } finally {
      priority.stop();
    }
    if (CAN_RAISE) {
      const after = niceByThread();
      for (const tid of lowered.filter((t) => after.has(t)))
        expect(after.get(tid), `thread ${tid}`).toBe(atStart.get(tid));
    }
  });

  it("leaves a thread already at a lower priority where it is, then and after", async () => {
    const before = new Set(niceByThread().keys());
    workers.push(await startWorker());
    const own = [...niceByThread().keys()].filter((tid) => !before.has(tid));
    expect(own.length).toBeGreaterThan(0);
    const lower = Math.min(TARGET + 2, 19);
    for (const tid of own) os.setPriority(tid, lower);
    const priority = lowerWorkerThreadPriority({ nice: TARGET, logger: testLogger, intervalMs: 50 });
    await new Promise((r) => setTimeout(r, 150));
    for (const tid of own) expect(niceByThread().get(tid), `thread ${tid}`).toBe(lower);
    priority.stop();
    for (const tid of own) expect(niceByThread().get(tid), `thread ${tid}`).toBe(lower);
  });
});
