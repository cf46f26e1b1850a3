import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { SERVICE_NODE_FLAGS } from "./support/replica-process.js";

const root = new URL("../", import.meta.url);

/** The Node flags of a command line: the words between `node` and the script it runs. */
function nodeFlagsOf(command: string): string[] {
  const words = command.split(/\s+/);
  const start = words.lastIndexOf("node");
  if (start < 0) throw new Error(`no node in: ${command}`);
  const flags: string[] = [];
  for (let i = start + 1; i < words.length; i++) {
    const w = words[i] ?? "";
    if (!w.startsWith("--")) break;
    // `--import tsx`: a loader, not one of the service's flags.
    if (w === "--import") {
      i++;
      continue;
    }
    flags.push(w);
  }
  return flags;
}

/** package.json's scripts. */
async function scripts(): Promise<Record<string, string>> {
  const pkg = JSON.parse(await readFile(new URL("package.json", root), "utf8")) as {
    scripts: Record<string, string>;
  };
  return pkg.scripts;
}

describe("the service's Node flags, where JSON and a Dockerfile cannot import them", () => {
  it("npm start gives the flags the replica processes of the tests use", async () => {
    expect(nodeFlagsOf((await scripts()).start ?? "")).toEqual([...SERVICE_NODE_FLAGS]);
  });

  it("start:dev and the bench give the heap flag too (source maps come from tsx there)", async () => {
    const all = await scripts();
    const heap = SERVICE_NODE_FLAGS.filter((f) => f !== "--enable-source-maps");
    for (const script of ["start:dev", "bench"]) expect(nodeFlagsOf(all[script] ?? ""), script).toEqual(heap);
  });

  it("the image's ENTRYPOINT gives them", async () => {
    const dockerfile = await readFile(new URL("Dockerfile", root), "utf8");
    const line = dockerfile.split("\n").find((l) => l.startsWith("ENTRYPOINT"));
    expect(line).toBeDefined();
    const entrypoint = JSON.parse((line ?? "").slice("ENTRYPOINT".length)) as string[];
    expect(entrypoint[0]).toBe("node");
    expect(entrypoint.slice(1)).toEqual([...SERVICE_NODE_FLAGS]);
  });
});
