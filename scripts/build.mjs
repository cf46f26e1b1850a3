#!/usr/bin/env node
// Compiles the service (src/**/*.ts, the web app aside) to JavaScript in dist/, one file per module
// (no bundling), with source maps: `npm start` and the container image run dist/main.js, so no TypeScript
// compiler loads at run time, in the main thread or in any worker thread. esbuild strips types only;
// `npm run check` is what type-checks. Takes about 0.2 s, so `npm start` builds every time.
import { readdir, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const src = path.join(root, "src");
const outdir = path.join(root, "dist");

const entryPoints = (await readdir(src, { recursive: true }))
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts") && !f.startsWith(`web${path.sep}`))
  .map((f) => path.join(src, f));

await build({
  entryPoints,
  outdir,
  outbase: src,
  bundle: false,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: true,
  logLevel: "warning",
});

// A module deleted from src/ must not linger in dist/. Only stale files go, not the whole folder: a service
// running from dist/ (npm start while npm test builds) still loads workers and lazy imports from it.
const wanted = new Set(entryPoints.map((f) => path.relative(src, f).replace(/\.ts$/, "")));
for (const f of await readdir(outdir, { recursive: true })) {
  const m = /^(.*)\.js(\.map)?$/.exec(f);
  if (m && !wanted.has(m[1])) await rm(path.join(outdir, f));
}
