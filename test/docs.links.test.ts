import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The README is the entry point and docs/ holds the rest: these checks keep the two honest without any
 * service. (1) README's folder map has one row for every folder under src/; (2) every relative link in
 * README.md and docs/*.md reaches an existing file and, with a `#fragment`, an existing heading there.
 */
const ROOT = path.resolve(import.meta.dirname, "..");
const README = path.join(ROOT, "README.md");
const FOLDER_MAP_HEADING = "## Folder map";

/** Every folder under `dir` (recursively, dot-folders left out), as `src/x/y/` relative to the repository. */
function foldersUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (abs: string) => {
    out.push(`${path.relative(ROOT, abs).split(path.sep).join("/")}/`);
    for (const e of readdirSync(abs, { withFileTypes: true })) {
      if (e.isDirectory() && !e.name.startsWith(".")) walk(path.join(abs, e.name));
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * The folders README's folder map names. Its format: under the `## Folder map` heading (up to the next `## `
 * heading), a markdown table whose rows start with the folder in backticks, ending in `/`:
 * `` | `src/index/faiss/` | what it holds | ``.
 */
function folderMapEntries(readme: string): string[] {
  const start = readme.split("\n").findIndex((l) => l.trim() === FOLDER_MAP_HEADING);
  if (start < 0) return [];
  const entries: string[] = [];
  for (const line of readme.split("\n").slice(start + 1)) {
    if (line.startsWith("## ")) break;
    const m = /^\|\s*`([^`]+\/)`\s*\|/.exec(line);
    if (m?.[1]) entries.push(m[1]);
  }
  return entries;
}

/** Markdown without fenced code blocks (their `#` lines are no headings, their brackets no links). */
function withoutFences(markdown: string): string {
  const out: string[] = [];
  let fence: string | null = null;
  for (const line of markdown.split("\n")) {
    const m = /^\s*(`{3,}|~{3,})/.exec(line);
    if (m?.[1]) {
      if (fence === null) fence = m[1];
      else if (m[1].startsWith(fence)) fence = null;
      out.push("");
      continue;
    }
    out.push(fence === null ? line : "");
  }
  return out.join("\n");
}

/**
 * GitHub's heading anchor: lower case, anything but letters, marks, digits, connector punctuation, spaces
 * and hyphens removed, each space a hyphen; a repeated slug gets `-1`, `-2`, ...
 */
function githubSlug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // a link in a heading keeps its text
    .replace(/<[^>]+>/g, "")
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "").replace(/ /g, "-");
}

/** The anchors a markdown file's headings (and explicit `<a id>`/`<a name>`) give, GitHub-style. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const text = withoutFences(markdown);
  for (const line of text.split("\n")) {
    const m = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m?.[1]) continue;
    const slug = githubSlug(m[1]);
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  for (const m of text.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) if (m[1]) anchors.add(m[1]);
  return anchors;
}

/** The targets of inline links and images (`[text](target)`, `![alt](target "title")`) outside code. */
function linkTargets(markdown: string): string[] {
  const text = withoutFences(markdown).replace(/`[^`\n]*`/g, "``");
  return [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].flatMap((m) =>
    m[1] ? [m[1]] : [],
  );
}

const docsDir = path.join(ROOT, "docs");
const markdownFiles = [
  README,
  ...readdirSync(docsDir)
    .filter((f) => f.endsWith(".md"))
    .map((f) => path.join(docsDir, f)),
];
const anchorCache = new Map<string, Set<string>>();
const anchorsIn = (file: string) => {
  let a = anchorCache.get(file);
  if (!a) {
    a = anchorsOf(readFileSync(file, "utf8"));
    anchorCache.set(file, a);
  }
  return a;
};

/** Why a link from `file` does not resolve, or null when it does. */
function brokenLink(file: string, target: string): string | null {
  const hash = target.indexOf("#");
  const filePart = hash < 0 ? target : target.slice(0, hash);
  const fragment = hash < 0 ? "" : decodeURIComponent(target.slice(hash + 1));
  const resolved = filePart === "" ? file : path.resolve(path.dirname(file), decodeURIComponent(filePart));
  if (!existsSync(resolved)) return `no file ${path.relative(ROOT, resolved)}`;
  if (fragment === "") return null;
  if (!statSync(resolved).isFile() || !resolved.endsWith(".md")) {
    return `#${fragment} points into ${path.relative(ROOT, resolved)}, which is not a markdown file`;
  }
  return anchorsIn(resolved).has(fragment)
    ? null
    : `no heading #${fragment} in ${path.relative(ROOT, resolved)}`;
}

describe("README and docs/", () => {
  it("README's folder map has a row for every folder under src/, and only for folders that exist", () => {
    const readme = readFileSync(README, "utf8");
    const entries = folderMapEntries(readme);
    expect(
      entries.length,
      `README.md has no "${FOLDER_MAP_HEADING}" table of \`src/...\` rows`,
    ).toBeGreaterThan(0);
    const listed = new Set(entries);
    const missing = foldersUnder(path.join(ROOT, "src")).filter((d) => !listed.has(d));
    expect(
      missing,
      `folders under src/ with no row in README's folder map:\n  ${missing.join("\n  ")}`,
    ).toEqual([]);
    const stale = entries.filter((e) => e.startsWith("src/") && !existsSync(path.join(ROOT, e)));
    expect(stale, `README's folder map names folders that do not exist:\n  ${stale.join("\n  ")}`).toEqual(
      [],
    );
    const twice = entries.filter((e, i) => entries.indexOf(e) !== i);
    expect(twice, `folders listed more than once in README's folder map: ${twice.join(", ")}`).toEqual([]);
  });

  it("every relative link in README.md and docs/*.md reaches an existing file and heading", () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of markdownFiles) {
      for (const target of linkTargets(readFileSync(file, "utf8"))) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http(s), mailto and other schemes
        checked++;
        const why = brokenLink(file, target);
        if (why) broken.push(`${path.relative(ROOT, file)}: (${target}) ${why}`);
      }
    }
    expect(checked).toBeGreaterThan(0);
    expect(broken, `broken links:\n  ${broken.join("\n  ")}`).toEqual([]);
  });

  it("slugs headings as GitHub does", () => {
    expect(githubSlug("Type prior: one ranking of defect and normal images")).toBe(
      "type-prior-one-ranking-of-defect-and-normal-images",
    );
    expect(githubSlug("Benchmarks (`npm run bench`)")).toBe("benchmarks-npm-run-bench");
    expect(githubSlug("Threads — before and after")).toBe("threads--before-and-after");
    expect([...anchorsOf("# A\n\n```sh\n# not a heading\n```\n## A\n")]).toEqual(["a", "a-1"]);
    expect(linkTargets('[x](a.md#b) `[y](no.md)` ![i](img.png "t")\n```\n[z](no.md)\n```')).toEqual([
      "a.md#b",
      "img.png",
    ]);
  });
});
