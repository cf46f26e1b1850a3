/**
 * Gallery-scale embeddings with the statistics of real ones. Every real image of the shared datasets
 * (both splits, about 5,800) is embedded once with the service's embedder (cached under bench/results/),
 * and each synthetic vector is a mixture of real embeddings of one class plus a real between-image
 * difference:
 *
 *   v = normalise( a + t (b - a) + s (c - d) ),  a, b of one (dataset, defect type); c, d any two images;
 *   t ~ U(0, 1), s ~ U(0, 0.35)
 *
 * so vectors stay in the span and covariance of real embeddings (their PCA spectrum, their per-class
 * clusters, their cosine range), unlike isotropic noise, which no real encoder produces.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { loadConfig } from "../src/config/config.js";
import { createEmbedder } from "../src/embedding/embedder.service.js";
import { loadEmbeddingModel } from "../src/embedding/embedding.model.js";
import { sha256File } from "../src/embedding/model.file.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { datasetRoots } from "./context.js";
import { seededRandom } from "./synthetic.js";

/** Real embeddings with their class (dataset/product/defect type) index. */
export interface RealEmbeddings {
  dimension: number;
  vectors: Float32Array;
  /** Class of each row. */
  classOf: Uint16Array;
  classes: string[];
}

/**
 * Embeds every image of every dataset under `datasetsDir` (cached by model id).
 * @throws Error when the model file is missing.
 */
export async function realEmbeddings({
  datasetsDir,
  modelsDir,
  preset,
  log,
}: {
  datasetsDir: string;
  modelsDir: string;
  preset: string;
  log: (line: string) => void;
}): Promise<RealEmbeddings> {
  const config = loadConfig({ MODELS_DIR: modelsDir, MODEL_PRESET: preset });
  const model = await loadEmbeddingModel(config.model, await sha256File(config.model.path));
  const cache = path.join("bench", "results", `real-embeddings-${model.modelId}.json`);
  if (existsSync(cache)) {
    await model.close();
    const c = JSON.parse(await readFile(cache, "utf8")) as {
      dimension: number;
      vectors: string;
      classOf: number[];
      classes: string[];
    };
    const buf = Buffer.from(c.vectors, "base64");
    return {
      dimension: c.dimension,
      vectors: new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice(),
      classOf: Uint16Array.from(c.classOf),
      classes: c.classes,
    };
  }
  const embedder = createEmbedder({
    model,
    modelConfig: config.model,
    limits: { maxBytes: 50_000_000, maxPixels: 40_000_000 },
  });
  const images = (
    await Promise.all(
      (
        await datasetRoots(datasetsDir)
      ).flatMap((root) => [
        listDatasetImages({ root, split: "gallery" }),
        listDatasetImages({ root, split: "query" }),
      ]),
    )
  ).flat();
  log(`embedding ${images.length} real images for the synthetic gallery (cached in ${cache})`);
  const classes: string[] = [];
  const classAt = new Map<string, number>();
  const rows: Float32Array[] = [];
  const classOf: number[] = [];
  for (let i = 0; i < images.length; i += 64) {
    const step = images.slice(i, i + 64);
    const outcomes = await embedder.embedMany(await Promise.all(step.map((im) => readFile(im.path))));
    outcomes.forEach((o, k) => {
      const im = step[k];
      if (!o.ok || !im) return;
      const key = `${im.productCode}/${im.defectCode ?? "good"}`;
      let c = classAt.get(key);
      if (c === undefined) {
        c = classes.push(key) - 1;
        classAt.set(key, c);
      }
      rows.push(o.embedding);
      classOf.push(c);
    });
  }
  await model.close();
  const dimension = model.dimension;
  const vectors = new Float32Array(rows.length * dimension);
  rows.forEach((r, i) => {
    vectors.set(r, i * dimension);
  });
  await mkdir(path.dirname(cache), { recursive: true });
  await writeFile(
    cache,
    JSON.stringify({
      dimension,
      vectors: Buffer.from(vectors.buffer).toString("base64"),
      classOf,
      classes,
    }),
  );
  return { dimension, vectors, classOf: Uint16Array.from(classOf), classes };
}

/**
 * `count` synthetic unit vectors mixed from `real` (see the module comment), row-major, reproducible
 * by `seed`; `classOf[i]` is the class each was mixed from.
 */
export function realMixture(
  real: RealEmbeddings,
  count: number,
  seed: number,
): { vectors: Float32Array; classOf: Uint16Array } {
  const d = real.dimension;
  const n = real.vectors.length / d;
  const byClass: number[][] = real.classes.map(() => []);
  real.classOf.forEach((c, i) => {
    byClass[c]?.push(i);
  });
  const rand = seededRandom(seed);
  const pick = (list: number[]) => list[Math.floor(rand() * list.length)] as number;
  const out = new Float32Array(count * d);
  const classOf = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    const a = Math.floor(rand() * n);
    const cls = real.classOf[a] as number;
    const b = pick(byClass[cls] as number[]);
    const c = Math.floor(rand() * n);
    const e = Math.floor(rand() * n);
    const t = rand();
    const s = rand() * 0.35;
    const off = i * d;
    let norm = 0;
    for (let j = 0; j < d; j++) {
      const va = real.vectors[a * d + j] as number;
      const v =
        va +
        t * ((real.vectors[b * d + j] as number) - va) +
        s * ((real.vectors[c * d + j] as number) - (real.vectors[e * d + j] as number));
      out[off + j] = v;
      norm += v * v;
    }
    const inv = 1 / Math.sqrt(norm || 1);
    for (let j = 0; j < d; j++) out[off + j] = (out[off + j] as number) * inv;
    classOf[i] = cls;
  }
  return { vectors: out, classOf };
}
