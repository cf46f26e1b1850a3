/**
 * Times the adapted-space fit (`decideAdaptation`: cross-validation gate, final fit, type prior) on real
 * embeddings and texture descriptors of a labelled image folder, embedded once with the service's model
 * and cached under bench/results/. With `--size N` the real rows are repeated with small real-difference
 * perturbations up to N rows (labels kept), the scale of a large rebuild.
 *
 *   npx tsx bench/fit.ts --root samples/xsdd/gallery --runs 3
 *   npx tsx bench/fit.ts --root ../shared/datasets --size 10000 --runs 1
 *   npx tsx bench/fit.ts --root samples/xsdd/gallery --save /tmp/fit.json   # decision + projection as JSON
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import { decideAdaptation } from "../src/adapted/cross-validation.js";
import { serializeProjection } from "../src/adapted/projection.file.js";
import { loadConfig } from "../src/config/config.js";
import { createEmbedder } from "../src/embedding/embedder.service.js";
import { loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { sha256File } from "../src/embedding/model.file.js";
import { type DatasetImage, listDatasetImages, type SplitName } from "../src/ingest/dataset.reader.js";
import { seededRandom } from "./synthetic.js";

interface FitInput {
  dim: number;
  textureDim: number;
  labels: string[];
  isDefect: boolean[];
  vectors: Float32Array;
  textures: Float32Array;
}

/** Every image under `root`: one dataset (`<product>/<defect>/<file>`) or a folder of datasets. */
async function imagesUnder(root: string, split: SplitName | undefined): Promise<DatasetImage[]> {
  const direct = await listDatasetImages({ root, split });
  if (direct.length > 0) return direct;
  const out: DatasetImage[] = [];
  for (const d of await readdir(root, { withFileTypes: true }))
    if (d.isDirectory()) out.push(...(await imagesUnder(path.join(root, d.name), split)));
  return out;
}

async function embedFolder(root: string, modelsDir: string, split: SplitName | undefined): Promise<FitInput> {
  const key = createHash("sha256")
    .update(`${path.resolve(root)}|${split ?? ""}`)
    .digest("hex")
    .slice(0, 12);
  const cache = path.join("bench", "results", `fit-input-${key}.json`);
  if (existsSync(cache)) {
    const c = JSON.parse(await readFile(cache, "utf8"));
    const f32 = (s: string) => {
      const b = Buffer.from(s, "base64");
      return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice();
    };
    return { ...c, vectors: f32(c.vectors), textures: f32(c.textures) };
  }
  const config = loadConfig({ MODELS_DIR: modelsDir });
  const model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
  const embedder = createEmbedder({
    model,
    modelConfig: config.model,
    limits: { maxBytes: 50e6, maxPixels: 1e8, minSide: 8 },
  });
  const images = await imagesUnder(root, split);
  const outcomes = await embedder.embedMany(await Promise.all(images.map((i) => readFile(i.path))));
  await model.close();
  const ok = outcomes.flatMap((o, i) => (o.ok && o.texture ? [{ o, img: images[i] as DatasetImage }] : []));
  const dim = embedder.dimension;
  const textureDim = embedder.textureDimension;
  const input: FitInput = {
    dim,
    textureDim,
    labels: ok.map(({ img }) => `${img.productCode}/${img.defectCode ?? "normal"}`),
    isDefect: ok.map(({ img }) => img.imageType === "defect"),
    vectors: Float32Array.from(ok.flatMap(({ o }) => (o.ok ? Array.from(o.embedding) : []))),
    textures: Float32Array.from(ok.flatMap(({ o }) => (o.ok ? Array.from(o.texture ?? []) : []))),
  };
  await mkdir(path.dirname(cache), { recursive: true });
  const b64 = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
  await writeFile(
    cache,
    JSON.stringify({ ...input, vectors: b64(input.vectors), textures: b64(input.textures) }),
  );
  return input;
}

/** `size` rows: the real ones, then perturbed copies `normalise(a + s (c - d))`, labels of `a`. */
function grow(input: FitInput, size: number): FitInput {
  const n = input.labels.length;
  if (size <= n) return input;
  const rand = seededRandom(7);
  const { dim, textureDim } = input;
  const vectors = new Float32Array(size * dim);
  const textures = new Float32Array(size * textureDim);
  vectors.set(input.vectors);
  textures.set(input.textures);
  const labels = [...input.labels];
  const isDefect = [...input.isDefect];
  for (let i = n; i < size; i++) {
    const a = i % n;
    const c = Math.floor(rand() * n);
    const d = Math.floor(rand() * n);
    const s = 0.2 * rand();
    for (const [src, out, w] of [
      [input.vectors, vectors, dim],
      [input.textures, textures, textureDim],
    ] as const) {
      let norm = 0;
      for (let k = 0; k < w; k++) {
        const v = (src[a * w + k] as number) + s * ((src[c * w + k] as number) - (src[d * w + k] as number));
        out[i * w + k] = v;
        norm += v * v;
      }
      if (src === input.vectors) {
        const inv = 1 / Math.sqrt(norm || 1);
        for (let k = 0; k < w; k++) out[i * w + k] = (out[i * w + k] as number) * inv;
      }
    }
    labels.push(input.labels[a] as string);
    isDefect.push(input.isDefect[a] as boolean);
  }
  return { dim, textureDim, labels, isDefect, vectors, textures };
}

const program = new Command()
  .requiredOption("--root <dir>", "labelled image folder (one dataset or a folder of datasets)")
  .option("--models-dir <dir>", "models folder", "../shared/models")
  .option("--size <n>", "rows to fit on (real rows repeated with perturbations beyond their count)", "0")
  .option("--runs <n>", "timed runs", "1")
  .option("--save <file>", "write the last run's decision and projection as JSON")
  .option("--split <name>", "only this split of each dataset's split.csv (gallery or query)")
  .parse();
const opts = program.opts<{
  root: string;
  modelsDir: string;
  size: string;
  runs: string;
  save?: string;
  split?: SplitName;
}>();
const input = grow(await embedFolder(opts.root, opts.modelsDir, opts.split), Number(opts.size));
const n = input.labels.length;
const times: number[] = [];
let last: Awaited<ReturnType<typeof decideAdaptation>> | undefined;
for (let r = 0; r < Number(opts.runs); r++) {
  const t0 = performance.now();
  last = await decideAdaptation({
    vectors: input.vectors.slice(),
    dim: input.dim,
    labels: input.labels,
    isDefect: input.isDefect,
    textures: {
      dim: input.textureDim,
      rowIds: Int32Array.from({ length: n }, (_, i) => i),
      vectors: input.textures.slice(),
    },
  });
  times.push(performance.now() - t0);
}
const sorted = [...times].sort((a, b) => a - b);
console.log(
  JSON.stringify({
    images: n,
    runsMs: times.map((t) => Math.round(t)),
    medianMs: Math.round(sorted[Math.floor(sorted.length / 2)] as number),
    space: last?.decision.space,
    reason: last?.decision.reason,
    typePrior: last?.decision.typePriorReason,
  }),
);
if (opts.save && last) {
  await writeFile(
    opts.save,
    JSON.stringify({
      decision: { ...last.decision, fitMs: 0 },
      projection: last.projection ? JSON.parse(serializeProjection(last.projection)) : null,
    }),
  );
}
