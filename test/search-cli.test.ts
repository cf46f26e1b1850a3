import { spawn } from "node:child_process";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../src/app.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { ingestAndIndexV2, REPO_ROOT, SAMPLE_DIR, startTestServers, testLogger } from "./support/services.js";

/** Runs `npm run search -- ...` as a child process (tsx, like the npm script); resolves with its exit code and output. */
function runSearchCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(REPO_ROOT, "src/cli/main.ts"), "search", ...args],
      { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Held-back sample images (not in the gallery): one per defect type, kept in their `<product>/<defect>/` folders. */
const HELD_BACK = [
  "finishing_roll_printing/6144.jpg",
  "iron_sheet_ash/3005.jpg",
  "oxide_scale_of_plate_system/5004.jpg",
  "red_iron/2005.jpg",
  "slag_inclusion/1001.jpg",
  "surface_scratch/4003.jpg",
];
const TOP_K = 3;

describe("npm run search: a folder of query images against the running service", () => {
  let servers: Awaited<ReturnType<typeof startTestServers>>;
  let app: App;
  let url: string;
  let queryDir: string;

  beforeAll(async () => {
    servers = await startTestServers({ indexDir: "index-cache", extra: { STARTUP_REBUILD: "never" } });
    // A third of the shipped sample gallery (70 of its 210 images, every defect type), ingested and indexed
    // before the server listens; the whole of it takes several times longer to set up and tests nothing more.
    const gallery = (await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") })).filter(
      (_, i) => i % 3 === 0,
    );
    app = await createApp(servers.config, testLogger);
    await ingestAndIndexV2(app, gallery);
    url = (await app.listen()).graphqlUrl;
    queryDir = path.join(servers.dir, "queries");
    for (const rel of HELD_BACK) {
      const to = path.join(queryDir, "steel_strip_xsdd", rel);
      await mkdir(path.dirname(to), { recursive: true });
      await copyFile(path.join(SAMPLE_DIR, "held-back", "steel_strip_xsdd", rel), to);
    }
  });

  afterAll(async () => {
    await app?.close();
    await servers?.stop();
  });

  it("writes one CSV row per (query image, rank) for every image under the folder, and exits 0", async () => {
    const r = await runSearchCli([queryDir, "--top-k", String(TOP_K), "--url", url]);
    expect(r.stderr).toMatch(
      new RegExp(`searched ${HELD_BACK.length} query images .*: ${HELD_BACK.length} ok, 0 failed`),
    );
    expect(r.code).toBe(0);
    const rows = parse(r.stdout, { columns: true }) as Record<string, string>[];
    expect(rows).toHaveLength(HELD_BACK.length * TOP_K);
    for (const rel of HELD_BACK) {
      const queryFile = path.join(queryDir, "steel_strip_xsdd", rel);
      const mine = rows.filter((row) => row.query_file === queryFile);
      expect(mine.map((row) => row.rank)).toEqual(["1", "2", "3"]);
      const scores = mine.map((row) => Number(row.score));
      expect(scores.every((s) => s > 0 && s <= 1)).toBe(true);
      expect([...scores].sort((a, b) => b - a)).toEqual(scores);
      for (const row of mine) {
        expect(row.product_code).toBe("steel_strip_xsdd");
        expect(row.image_id).toMatch(/\S/);
        expect(row.storage_url).toMatch(/^s3:\/\//);
        expect(row.download_url).toMatch(/^https?:\/\//);
        // The query's suggestion is repeated on each of its rows.
        expect(row.suggested_defect_code).toBe(mine[0]?.suggested_defect_code);
        expect(Number(row.suggestion_share)).toBeGreaterThan(0);
      }
    }
    // Held-back images find their own defect type at rank 1 (34 of the 35 do against the whole sample gallery).
    const ownTypeFirst = HELD_BACK.filter((rel) =>
      rows.some(
        (row) =>
          row.query_file === path.join(queryDir, "steel_strip_xsdd", rel) &&
          row.rank === "1" &&
          row.defect_code === rel.split("/")[0],
      ),
    );
    expect(ownTypeFirst.length).toBeGreaterThanOrEqual(HELD_BACK.length - 1);
  });

  it("tries a non-image file named like an image and a file given explicitly, lists both as failed on stderr, still writes the others, and exits 1", async () => {
    const fake = path.join(queryDir, "steel_strip_xsdd", "x.jpg");
    await writeFile(fake, "not an image, only its name says so\n");
    // Given explicitly, a file is tried whatever its extension; in a folder, notes.txt would be skipped.
    const notes = path.join(servers.dir, "notes.txt");
    await writeFile(notes, "inspection notes\n");
    const out = path.join(servers.dir, "results.json");
    const r = await runSearchCli([queryDir, notes, "--format", "json", "--out", out, "--top-k", "2"], {
      DEFECT_LENS_URL: url,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`failed: ${fake}: `);
    expect(r.stderr).toContain(`failed: ${notes}: `);
    expect(r.stderr).toMatch(/x\.jpg: .*\(INVALID_IMAGE_FORMAT\)/);
    const json = JSON.parse(await readFile(out, "utf8")) as {
      rows: { queryFile: string; rank: number }[];
      suggestions: { queryFile: string; suggestion: { defectCode: string | null } | null }[];
      failures: { queryFile: string; code: string; message: string }[];
    };
    expect(json.rows).toHaveLength(HELD_BACK.length * 2);
    expect(json.suggestions).toHaveLength(HELD_BACK.length);
    expect(json.failures.map((f) => f.queryFile).sort()).toEqual([notes, fake].sort());
    expect(json.failures.every((f) => f.code === "INVALID_IMAGE_FORMAT")).toBe(true);
  });

  it("exits 1 and says so when the service cannot be reached", async () => {
    // A port nothing listens on: taken from the OS, then freed.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const r = await runSearchCli([path.join(queryDir, "steel_strip_xsdd", HELD_BACK[0] ?? "")], {
      DEFECT_LENS_URL: `http://127.0.0.1:${port}/graphql`,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/failed: .*6144\.jpg: .*\(ECONNREFUSED\)/);
  });
});
