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

describe.runIf(process.platform === "linux")("worker thread priority", () => {
  const workers: Worker[] = [];
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.terminate();
  });

  it("lowers every thread but the main one, and threads started later within a scan", async () => {
    workers.push(await startWorker());
    const priority = lowerWorkerThreadPriority({ nice: 7, logger: testLogger, intervalMs: 50 });
    try {
      const now = niceByThread();
      expect(now.get(process.pid)).toBe(0);
      const others = [...now].filter(([tid]) => tid !== process.pid);
      expect(others.length).toBeGreaterThan(2);
      for (const [tid, nice] of others) expect(nice, `thread ${tid}`).toBeGreaterThanOrEqual(7);

      const before = new Set(now.keys());
      workers.push(await startWorker());
      const started = [...niceByThread().keys()].filter((tid) => !before.has(tid));
      expect(started.length).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 200));
      const later = niceByThread();
      for (const tid of started.filter((t) => later.has(t))) expect(later.get(tid), `thread ${tid}`).toBe(7);
      expect(later.get(process.pid)).toBe(0);
    } finally {
      priority.stop();
    }
  });

  it("does nothing at nice 0", () => {
    const before = niceByThread();
    const priority = lowerWorkerThreadPriority({ nice: 0, logger: testLogger });
    expect(priority.scan()).toBe(0);
    expect(niceByThread()).toEqual(before);
    priority.stop();
  });
});
