import type { GalleryRow, ImageRepository } from "../db/images.repository.js";
import { classKey, suggestDefectType } from "../search/defect-suggestion.js";
import type { ModelRuntime } from "./model-runtimes.js";

/** Leave-one-out retrieval quality of one model on the labelled defect gallery. */
export interface LabelledQuality {
  modelId: string;
  /** Gallery images that queried the rest. */
  queries: number;
  /** Mean precision@10: share of the 10 nearest other images with the query's (product, defect type). */
  p10: number;
  /** Share of queries whose defect-type suggestion names their own (product, defect type). */
  suggestionAccuracy: number;
  perClass: { label: string; queries: number; p10: number; suggestionAccuracy: number }[];
  /** What the adapted-space gate measured on the served defect index (k-fold cross-validated P@10). */
  cvRawP10: number | null;
  cvAdaptedP10: number | null;
  /** The space searches get by default for this model. */
  servedSpace: string;
}

/** Rows read per page when sampling the gallery. */
const PAGE = 2000;

/**
 * Up to `limit` defect gallery images that have an embedding under every one of `modelIds`, evenly spread
 * over the gallery by image id (the same queries for every model compared).
 */
export async function comparisonQueries(
  repository: ImageRepository,
  modelIds: readonly string[],
  limit: number,
): Promise<GalleryRow[]> {
  const [first, ...others] = modelIds;
  if (!first) return [];
  const rows: GalleryRow[] = [];
  for (let after = 0; ; ) {
    const page = await repository.listGalleryPage({
      imageType: "defect",
      modelId: first,
      afterImageId: after,
      limit: PAGE,
    });
    if (page.length === 0) break;
    after = page[page.length - 1]?.imageId ?? after;
    rows.push(...page.filter((r) => r.embedding !== null));
  }
  let usable = rows;
  for (const id of others) {
    const have = await repository.getEmbeddings(
      usable.map((r) => r.imageId),
      id,
    );
    usable = usable.filter((r) => have.has(r.imageId));
  }
  if (usable.length <= limit) return usable;
  const step = usable.length / limit;
  return Array.from({ length: limit }, (_, i) => usable[Math.floor(i * step)] as GalleryRow);
}

/**
 * Each query image searches the model's served defect index in the raw space (itself left out): P@10 and
 * the suggestion's accuracy against its own label, overall and per (product, defect type). The raw space is
 * used because the adapted projection was fitted on the whole gallery, queries included; the gate's k-fold
 * figures for both spaces are reported beside it.
 * @throws DomainError INDEX_NOT_READY when the model's V2 defect index is not served here.
 */
export async function labelledQuality({
  runtime,
  repository,
  queries,
  suggestionTopK,
}: {
  runtime: ModelRuntime;
  repository: ImageRepository;
  queries: readonly GalleryRow[];
  suggestionTopK: number;
}): Promise<LabelledQuality> {
  const matcher = runtime.matchers.get("v2");
  if (!matcher) throw new Error("the V2 matcher is not configured");
  matcher.assertReady("defect");
  const vectors = await repository.getEmbeddings(
    queries.map((q) => q.imageId),
    runtime.modelId,
  );
  const perClass = new Map<string, { queries: number; p10: number; correct: number }>();
  let p10Sum = 0;
  let correct = 0;
  let n = 0;
  for (const q of queries) {
    const v = vectors.get(q.imageId);
    if (!v) continue;
    const { matches } = await matcher.search("defect", v, {
      topK: Math.max(10, suggestionTopK),
      space: "raw",
      excludeContentSha256: q.contentSha256 ?? undefined,
    });
    const own = classKey(q);
    const p10 = matches.slice(0, 10).filter((m) => classKey(m.entry) === own).length / 10;
    const suggestion = suggestDefectType(
      matches.map((m) => ({ ...m.entry, score: m.score })),
      suggestionTopK,
    );
    const right = suggestion !== null && classKey(suggestion) === own ? 1 : 0;
    const label = `${q.productCode}/${q.defectCode ?? "normal"}`;
    const c = perClass.get(label) ?? { queries: 0, p10: 0, correct: 0 };
    c.queries += 1;
    c.p10 += p10;
    c.correct += right;
    perClass.set(label, c);
    p10Sum += p10;
    correct += right;
    n += 1;
  }
  const adapted = matcher.state("defect").adaptedSpace;
  return {
    modelId: runtime.modelId,
    queries: n,
    p10: n ? p10Sum / n : 0,
    suggestionAccuracy: n ? correct / n : 0,
    perClass: [...perClass.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([label, c]) => ({
        label,
        queries: c.queries,
        p10: c.p10 / c.queries,
        suggestionAccuracy: c.correct / c.queries,
      })),
    cvRawP10: adapted.cvRawP10,
    cvAdaptedP10: adapted.cvAdaptedP10,
    servedSpace: adapted.served,
  };
}
