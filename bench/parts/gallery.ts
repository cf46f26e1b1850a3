import { readFile } from "node:fs/promises";
import { type Distribution, distribution } from "../../tools/shared/stats.js";
import { type BenchContext, ingestAndRebuild, realImages, since } from "../context.js";
import { writePaddedIndex } from "../padded-index.js";

/** One gallery size of the living-gallery benchmark. */
export interface GalleryEditResult {
  vectors: number;
  factory: string;
  /** Images added, one per addGalleryImages call (multipart, over HTTP). */
  added: number;
  /** addGalleryImages round trip (ms): embed, near-duplicate check, objects, row, change log, applied. */
  addMs: Distribution;
  /** From the add's answer to a search's answer that ranks the image first (ms): the next search. */
  addToSearchableMs: Distribution;
  /** Of the added images, how many that next search ranked first. */
  foundAtRank1: number;
  /** Adds per second, one image per call, while the searches below run. */
  addsPerSecond: number;
  /** Searches at concurrency 4 over HTTP (ms): quiet, and while the adds run. */
  quietSearch: Distribution;
  searchDuringAdds: Distribution;
  failedSearches: number;
  /** removeGalleryImage round trip (ms). */
  removeMs: Distribution;
}

const CONCURRENCY = 4;
const QUIET_MS = 5000;
const ADDS = 40;
const SEARCH = `query S($input: SearchSimilarInput!) { searchSimilar(input: $input) { hits { imageId } } }`;
const ADD = `mutation A($images: [GalleryImageInput!]!) { addGalleryImages(images: $images) {
  added { imageId } refused { code message } } }`;
const TOKEN = "bench-gallery-admin-token-0123";

/**
 * Adds, searches and removes over HTTP on a gallery of each size (real images, padded with real-mixture
 * vectors to the size): how long an add takes, how soon the image is searchable (no rebuild), adds per
 * second, and what concurrent searches see meanwhile.
 */
export async function benchGallery(ctx: BenchContext): Promise<GalleryEditResult[]> {
  const { opts } = ctx;
  const env = await ctx.factory.create("bench_gallery", { MODEL_PRESET: opts.model, ADMIN_TOKEN: TOKEN });
  const app = await env.createApp();
  const results: GalleryEditResult[] = [];
  try {
    await ingestAndRebuild(app, opts.datasetsDir, 60);
    const server = await app.listen();
    const url = server.graphqlUrl;
    const post = async (body: string | FormData, headers: Record<string, string>) => {
      const res = await fetch(url, { method: "POST", body, headers });
      return (await res.json()) as { data?: Record<string, unknown>; errors?: { message: string }[] };
    };
    const search = (base64: string) =>
      post(JSON.stringify({ query: SEARCH, variables: { input: { image: { base64 }, topK: 10 } } }), {
        "content-type": "application/json",
      });
    const [probe] = await realImages(opts.datasetsDir, "query", 1);
    const probeImage = (await readFile(probe?.path ?? "")).toString("base64");
    const toAdd = (await realImages(opts.datasetsDir, "query", ADDS + 1)).slice(1);
    for (const size of opts.sizes) {
      ctx.log(`gallery: ${size}-vector index`);
      const padded = await writePaddedIndex(app, size, await ctx.real());
      const matcher = app.matchers.get("v2");
      if (
        !(await matcher?.loadPersisted("defect", "loaded", false)) ||
        matcher?.state("defect").count !== size
      )
        throw new Error("the padded index was not swapped in");
      let stop = false;
      let failed = 0;
      const searcher = async (into: number[]) => {
        while (!stop) {
          const t0 = performance.now();
          const r = await search(probeImage).catch((e: Error) => ({ errors: [{ message: e.message }] }));
          into.push(since(t0));
          if (r.errors) failed++;
        }
      };
      const quiet: number[] = [];
      let running = Array.from({ length: CONCURRENCY }, () => searcher(quiet));
      await new Promise((r) => setTimeout(r, QUIET_MS));
      stop = true;
      await Promise.all(running);
      stop = false;
      const during: number[] = [];
      running = Array.from({ length: CONCURRENCY }, () => searcher(during));
      const addMs: number[] = [];
      const searchableMs: number[] = [];
      const ids: string[] = [];
      let found = 0;
      const t0 = performance.now();
      for (const img of toAdd) {
        const bytes = await readFile(img.path);
        const form = new FormData();
        const input = { file: null, productCode: img.productCode, defectCode: img.defectCode };
        form.append("operations", JSON.stringify({ query: ADD, variables: { images: [input] } }));
        form.append("map", JSON.stringify({ 0: ["variables.images.0.file"] }));
        form.append("0", new Blob([new Uint8Array(bytes)]), "image");
        const ta = performance.now();
        const r = await post(form, { "apollo-require-preflight": "true", authorization: `Bearer ${TOKEN}` });
        addMs.push(since(ta));
        const added = (r.data?.addGalleryImages as { added: { imageId: string }[] } | undefined)?.added[0];
        if (!added) continue;
        ids.push(added.imageId);
        const ts = performance.now();
        const s = await search(bytes.toString("base64"));
        searchableMs.push(since(ts));
        const top = (s.data?.searchSimilar as { hits: { imageId: string }[] } | undefined)?.hits[0];
        if (top?.imageId === added.imageId) found++;
      }
      const addsPerSecond = ids.length / (since(t0) / 1000);
      stop = true;
      await Promise.all(running);
      const removeMs: number[] = [];
      for (const id of ids) {
        const tr = performance.now();
        await post(
          JSON.stringify({
            query: `mutation R($id: ID!) { removeGalleryImage(imageId: $id) }`,
            variables: { id },
          }),
          { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
        );
        removeMs.push(since(tr));
      }
      results.push({
        vectors: size,
        factory: padded.factory,
        added: ids.length,
        addMs: distribution(addMs),
        addToSearchableMs: distribution(searchableMs),
        foundAtRank1: found,
        addsPerSecond,
        quietSearch: distribution(quiet),
        searchDuringAdds: distribution(during),
        failedSearches: failed,
        removeMs: distribution(removeMs),
      });
    }
  } finally {
    await app.close();
  }
  return results;
}
