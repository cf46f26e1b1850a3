/**
 * Offline replica of the service's ranking, for quick experiments: the service's own embedder (same
 * decoding, preprocessing, multi-view), its own cross-validation gate and projection, and the same merge
 * of the defect and normal indexes by score, with exact search in JavaScript instead of FAISS. On the
 * default settings it reproduces `npm run eval`'s service figures (magnetic_tile P@10 0.754).
 *
 *   npx tsx eval/offline.ts --datasets magnetic_tile [--env MULTI_VIEW_GRID=2,MULTI_VIEW_SIZE=448]
 *
 * Prints raw and adapted P@10, overall and per class, ingestion-style embedding throughput and per-query
 * inference time. Nothing is fitted to the queries: the gate sees the gallery only.
 */
import path from "node:path";
import { Command } from "commander";
import { DEFAULT_GATE, decideAdaptation } from "../src/adapted/cross-validation.js";
import { adaptVector, type Projection } from "../src/adapted/projection.js";
import { typeLean, typeShift } from "../src/adapted/type-prior.js";
import { loadConfig } from "../src/config/config.js";
import { createEmbedder } from "../src/embedding/embedder.service.js";
import { loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { sha256File } from "../src/shared/hash.js";
import { distribution } from "../tools/shared/stats.js";
import { type EvalDataset, type LoadedImage, loadEvalDataset } from "./dataset.js";
import { meanMetrics } from "./metrics.js";
import { type RankedQuery, scoreRankings } from "./ranking.js";

const opts = new Command()
  .option("--datasets-dir <dir>", "folder of dataset folders", "../shared/datasets")
  .requiredOption("--datasets <list>", "comma-separated dataset names")
  .option("--env <list>", "service variables, KEY=VALUE,KEY=VALUE (e.g. MULTI_VIEW_GRID=2)", "")
  .option(
    "--each-candidate",
    "also score every candidate of the gate on the queries (a report, not a choice)",
  )
  .option("--dump <dir>", "write the gallery and query embeddings (float32) and labels there")
  .option("--show-class <label>", "per-query P@10, raw vs adapted, of one class (e.g. magnetic_tile/fray)")
  .parse()
  .opts<{
    datasetsDir: string;
    datasets: string;
    env: string;
    eachCandidate?: boolean;
    showClass?: string;
    dump?: string;
  }>();

const overrides = Object.fromEntries(
  opts.env
    .split(",")
    .filter(Boolean)
    .map((kv) => kv.split("=") as [string, string]),
);
const config = loadConfig({ MODELS_DIR: "models", ...overrides });
const model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
const embedder = createEmbedder({
  model,
  modelConfig: config.model,
  limits: { maxBytes: 1e9, maxPixels: 1e9, minSide: 1 },
});

const trainingLabel = (g: LoadedImage) => `${g.productCode}/${g.defectCode ?? "normal"}`;
const dot = (a: Float32Array, b: Float32Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
};

/** Per gallery row and query, the score the service would give in one space (merged indexes). */
function scores(
  gallery: Float32Array[],
  queries: Float32Array[],
  isDefect: boolean[],
  projection: Projection | null,
  /** With the projection's type prior (a search of both image types): each query's texture descriptor. */
  prior?: { textures: (Float32Array | null)[] },
): Float64Array[] {
  const adapt = (v: Float32Array) => (projection ? adaptVector(projection, v) : v);
  const inSpace = (defect: boolean) => projection !== null && (projection.scope === "all" || defect);
  const g = gallery.map((v, i) => (inSpace(isDefect[i] as boolean) ? adapt(v) : v));
  const tp = prior ? projection?.typePrior : undefined;
  return queries.map((q, qi) => {
    const qa = adapt(q);
    const d = tp?.descriptor === "texture" ? prior?.textures[qi] : q;
    const lean = tp && d ? typeLean(tp, d) : 0;
    return Float64Array.from(
      g,
      (v, i) =>
        dot(inSpace(isDefect[i] as boolean) ? qa : q, v) +
        (tp ? typeShift(tp, lean, isDefect[i] as boolean) : 0),
    );
  });
}

function rank(dataset: EvalDataset, s: Float64Array[]): RankedQuery[] {
  return dataset.queries.map((query, qi) => {
    const row = s[qi] as Float64Array;
    const order = Array.from(row.keys()).sort((a, b) => (row[b] as number) - (row[a] as number) || a - b);
    return {
      query,
      ranking: order.map((i) => (dataset.gallery[i] as LoadedImage).sha256),
      scores: order.map((i) => row[i] as number),
    };
  });
}

function report(name: string, dataset: EvalDataset, ranked: RankedQuery[]) {
  const scored = scoreRankings(dataset.gallery, ranked);
  const labels = [...new Set(scored.map((s) => s.label))].sort();
  const per = labels.map((l) => {
    const m = meanMetrics(scored.filter((s) => s.label === l).map((s) => s.metrics));
    return `${l.split("/")[1]} ${m.p10.toFixed(3)}`;
  });
  const all = meanMetrics(scored.map((s) => s.metrics));
  console.log(`  ${name.padEnd(28)} P@10 ${all.p10.toFixed(3)} mAP ${all.ap.toFixed(3)} | ${per.join(", ")}`);
}

console.log(`model id ${model.modelId}, views per image ${embedder.viewsPerImage}`);
for (const name of opts.datasets.split(",")) {
  const dataset = await loadEvalDataset(path.resolve(opts.datasetsDir, name));
  const t0 = performance.now();
  const outcomes = await embedder.embedMany(dataset.gallery.map((g) => g.bytes));
  const galleryMs = performance.now() - t0;
  const gallery = outcomes.map((o) => {
    if (!o.ok) throw o.error;
    return o.embedding;
  });
  const galleryTextures = outcomes.map((o) => (o.ok ? o.texture : null));
  const queryTextures: (Float32Array | null)[] = [];
  const inference: number[] = [];
  const queries: Float32Array[] = [];
  for (const q of dataset.queries) {
    const r = await embedder.embedOne(q.bytes);
    inference.push(r.timing.inferenceMs);
    queries.push(r.embedding);
    queryTextures.push(r.texture);
  }
  const dim = embedder.dimension;
  const packed = new Float32Array(gallery.length * dim);
  gallery.forEach((v, i) => {
    packed.set(v, i * dim);
  });
  const isDefect = dataset.gallery.map((g) => g.imageType === "defect");
  if (opts.dump) {
    const { mkdir, writeFile } = await import("node:fs/promises");
    await mkdir(opts.dump, { recursive: true });
    const qPacked = new Float32Array(queries.length * dim);
    queries.forEach((v, i) => {
      qPacked.set(v, i * dim);
    });
    await writeFile(path.join(opts.dump, `${name}.gallery.f32`), Buffer.from(packed.buffer));
    await writeFile(path.join(opts.dump, `${name}.query.f32`), Buffer.from(qPacked.buffer));
    await writeFile(
      path.join(opts.dump, `${name}.json`),
      JSON.stringify({
        dim,
        gallery: dataset.gallery.map((g) => ({ label: g.label, type: g.imageType, path: g.relPath })),
        query: dataset.queries.map((g) => ({ label: g.label, type: g.imageType, path: g.relPath })),
      }),
    );
  }
  const td = embedder.textureDimension;
  const textures =
    td > 0 && galleryTextures.every((t) => t !== null)
      ? {
          vectors: Float32Array.from(galleryTextures.flatMap((t) => Array.from(t as Float32Array))),
          dim: td,
          rowIds: Int32Array.from(galleryTextures.keys()),
        }
      : undefined;
  const { decision, projection } = await decideAdaptation({
    vectors: packed,
    dim,
    labels: dataset.gallery.map(trainingLabel),
    isDefect,
    textures,
  });
  const inf = distribution(inference);
  console.log(
    `${name}: gallery ${gallery.length} embedded at ${((gallery.length / galleryMs) * 1000).toFixed(1)} img/s; ` +
      `query inference p50 ${inf.p50.toFixed(1)} ms p99 ${inf.p99.toFixed(1)} ms`,
  );
  console.log(`  gate: ${decision.space} — ${decision.reason}`);
  console.log(`  type prior: ${decision.typePriorReason} (${(decision.fitMs / 1000).toFixed(1)} s in all)`);
  if (opts.dump && projection) {
    const { writeFile } = await import("node:fs/promises");
    const pack = (vs: Float32Array[]) => {
      const d = projection.inDim + projection.outDim;
      const out = new Float32Array(vs.length * d);
      vs.forEach((v, i) => {
        out.set(adaptVector(projection, v), i * d);
      });
      return Buffer.from(out.buffer);
    };
    await writeFile(path.join(opts.dump, `${name}.gallery.adapted.f32`), pack(gallery));
    await writeFile(path.join(opts.dump, `${name}.query.adapted.f32`), pack(queries));
  }
  const rawScores = scores(gallery, queries, isDefect, null);
  report("raw", dataset, rank(dataset, rawScores));
  const adaptedScores = scores(gallery, queries, isDefect, projection);
  const adaptedRanked = rank(dataset, adaptedScores);
  report("adapted (served)", dataset, adaptedRanked);
  if (projection?.typePrior) {
    report(
      "adapted + type prior (ALL)",
      dataset,
      rank(dataset, scores(gallery, queries, isDefect, projection, { textures: queryTextures })),
    );
  }
  if (opts.showClass) {
    const raw = scoreRankings(dataset.gallery, rank(dataset, rawScores));
    const adapted = scoreRankings(dataset.gallery, adaptedRanked);
    raw.forEach((r, i) => {
      if (r.label !== opts.showClass) return;
      const a = adapted[i];
      console.log(`    ${r.relPath}: raw ${r.metrics.p10.toFixed(1)} adapted ${a?.metrics.p10.toFixed(1)}`);
    });
  }
  if (opts.eachCandidate) {
    for (const candidate of DEFAULT_GATE.candidates) {
      // Forced through the gate (no gain or class condition) to get that candidate's final fit.
      const forced = await decideAdaptation({
        vectors: packed,
        dim,
        labels: dataset.gallery.map(trainingLabel),
        isDefect,
        settings: { ...DEFAULT_GATE, candidates: [candidate], minGain: -1, classTolerance: 1 },
      });
      const cv = forced.decision.best;
      report(
        `s${candidate.shrinkage} b${candidate.blend} ${candidate.scope} (CV ${cv?.p10.toFixed(3)}, fray CV ${cv?.perClass.find((c) => c.label.endsWith("/fray"))?.p10.toFixed(3) ?? "-"})`,
        dataset,
        rank(dataset, scores(gallery, queries, isDefect, forced.projection)),
      );
    }
  }
}
await model.close();
