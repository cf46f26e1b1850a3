// Writes the shipped sample (samples/xsdd/) from a full X-SDD folder laid out as the team's datasets are:
//   npx tsx scripts/make-sample-gallery.ts <xsdd folder with split.csv and near_duplicates.csv> samples/xsdd
// Per defect type: GALLERY_PER_CLASS images of the dataset's gallery split, HELD_BACK_PER_CLASS of its
// query split, JPEG only, evenly spread over the sorted file list (deterministic). A held-back image that is a
// near-duplicate of a sample gallery image (near_duplicates.csv) is left out, so a search for it is honest.
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "csv-parse/sync";

const GALLERY_PER_CLASS = 30;
const HELD_BACK_PER_CLASS = 5;

const [source, out] = process.argv.slice(2);
if (!source || !out) {
  console.error("usage: tsx scripts/make-sample-gallery.ts <xsdd folder> <out folder>");
  process.exit(2);
}
type Row = { path: string; product: string; defect_type: string; split: "gallery" | "query" };
const rows = parse(await readFile(path.join(source, "split.csv"), "utf8"), { columns: true }) as Row[];
const nearDup = parse(await readFile(path.join(source, "near_duplicates.csv"), "utf8"), {
  columns: true,
}) as { path_a: string; path_b: string }[];
/** split.csv paths start with the dataset folder's name (`xsdd/...`); drop it. */
const rel = (p: string) => p.split("/").slice(1).join("/");
const evenly = <T>(xs: T[], n: number) =>
  xs.length <= n ? xs : Array.from({ length: n }, (_, i) => xs[Math.floor((i * xs.length) / n)] as T);

const manifest = ["path,role,product,defect_type,bytes,sha256,source_path"];
for (const defect of [...new Set(rows.map((r) => r.defect_type))].sort()) {
  const of = (split: Row["split"]) =>
    rows
      .filter((r) => r.defect_type === defect && r.split === split && r.path.endsWith(".jpg"))
      .sort((a, b) => a.path.localeCompare(b.path, "en", { numeric: true }));
  const gallery = evenly(of("gallery"), GALLERY_PER_CLASS);
  const inGallery = new Set(gallery.map((r) => r.path));
  const nearGallery = new Set(
    nearDup.flatMap((d) =>
      inGallery.has(d.path_a) ? [d.path_b] : inGallery.has(d.path_b) ? [d.path_a] : [],
    ),
  );
  const heldBack = evenly(
    of("query").filter((r) => !nearGallery.has(r.path)),
    HELD_BACK_PER_CLASS,
  );
  for (const [role, picks] of [
    ["gallery", gallery],
    ["held-back", heldBack],
  ] as const) {
    for (const r of picks) {
      const target = path.join(role, rel(r.path));
      await mkdir(path.join(out, path.dirname(target)), { recursive: true });
      await copyFile(path.join(source, rel(r.path)), path.join(out, target));
      const bytes = await readFile(path.join(out, target));
      const sha = createHash("sha256").update(bytes).digest("hex");
      manifest.push([target, role, r.product, defect, bytes.length, sha, r.path].join(","));
    }
  }
}
await writeFile(path.join(out, "manifest.csv"), `${manifest.join("\n")}\n`);
console.log(`wrote ${manifest.length - 1} images to ${out}`);
