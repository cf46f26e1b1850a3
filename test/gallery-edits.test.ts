import { readFile } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.js";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { thumbnailKey } from "../src/thumbnails/thumbnail.js";
import { errorCode, type GqlResponse, gql, SEARCH, type SearchAnswer } from "./support/graphql-client.js";
import { SAMPLE_DIR, testLogger } from "./support/services.js";
import { startWebGallery, WEB_ADMIN_TOKEN, type WebGallery } from "./support/web-gallery.js";

const ADD = /* GraphQL */ `
  mutation Add($images: [GalleryImageInput!]!, $skip: Boolean) {
    addGalleryImages(images: $images, skipNearDuplicates: $skip) {
      added { imageId imageType productCode productName defectCode defectName width height thumbnailUrl }
      refused { index code message }
      nearDuplicates { index imageId neighbourImageId similarity hashDistance }
    }
  }
`;
const RELABEL = /* GraphQL */ `
  mutation Relabel($id: ID!, $p: String!, $d: String) {
    relabelGalleryImage(imageId: $id, productCode: $p, defectCode: $d) { imageId imageType productCode defectCode }
  }
`;
const REMOVE = /* GraphQL */ `
  mutation Remove($id: ID!) { removeGalleryImage(imageId: $id) }
`;
const TASKS = /* GraphQL */ `
  query { status { rebuildTasks { id trigger } indexes { version imageType count deltaAdded deltaRemoved changeSeq } } }
`;

interface AddAnswer {
  addGalleryImages: {
    added: {
      imageId: string;
      imageType: string;
      productCode: string;
      productName: string;
      defectCode: string | null;
      defectName: string | null;
      width: number;
      height: number;
      thumbnailUrl: string | null;
    }[];
    refused: { index: number; code: string; message: string }[];
    nearDuplicates: {
      index: number;
      imageId: string | null;
      neighbourImageId: string;
      similarity: number;
      hashDistance: number | null;
    }[];
  };
}

/** addGalleryImages as a GraphQL multipart request, one file part per image. */
async function addImages(
  url: string,
  images: { file: Buffer; productCode: string; defectCode?: string | null; name?: string }[],
  skip = false,
  token = WEB_ADMIN_TOKEN,
): Promise<GqlResponse<AddAnswer>> {
  const form = new FormData();
  const inputs = images.map(({ productCode, defectCode }) => ({ file: null, productCode, defectCode }));
  form.append("operations", JSON.stringify({ query: ADD, variables: { images: inputs, skip } }));
  form.append(
    "map",
    JSON.stringify(Object.fromEntries(images.map((_, i) => [i, [`variables.images.${i}.file`]]))),
  );
  images.forEach((img, i) => {
    form.append(String(i), new Blob([new Uint8Array(img.file)]), img.name ?? `image-${i}.jpg`);
  });
  const res = await fetch(url, {
    method: "POST",
    body: form,
    headers: { "apollo-require-preflight": "true", authorization: `Bearer ${token}` },
  });
  return (await res.json()) as GqlResponse<AddAnswer>;
}

describe("living gallery: add, relabel and remove through the API, searchable without a rebuild", () => {
  let web: WebGallery;
  const search = (file: Buffer, extra: Record<string, unknown> = {}) =>
    gql<SearchAnswer>(web.graphqlUrl, SEARCH, {
      input: { image: { base64: file.toString("base64") }, topK: 10, ...extra },
    });
  const admin = <T>(query: string, variables: Record<string, unknown> = {}) =>
    gql<T>(web.graphqlUrl, query, variables, WEB_ADMIN_TOKEN);
  const taskCount = async () =>
    (
      (await gql<{ status: { rebuildTasks: unknown[] } }>(web.graphqlUrl, TASKS)).data?.status.rebuildTasks ??
      []
    ).length;

  beforeAll(async () => {
    web = await startWebGallery(6);
  });
  afterAll(async () => {
    await web?.stop();
  });

  it("adds a held-back image: the next search finds it at rank 1 with its labels, with no rebuild", async () => {
    const tasksBefore = await taskCount();
    const query = web.queries[0];
    if (!query) throw new Error("no held-back image");
    const file = await readFile(query.path);
    const before = await search(file);
    expect(before.data?.searchSimilar.hits[0]?.score).toBeLessThan(0.999);
    const t0 = performance.now();
    const r = await addImages(web.graphqlUrl, [
      { file, productCode: query.productCode, defectCode: query.defectCode ?? "normal" },
    ]);
    expect(r.errors).toBeUndefined();
    const added = r.data?.addGalleryImages.added[0];
    expect(added).toMatchObject({ productCode: query.productCode, defectCode: query.defectCode });
    const after = await search(file);
    const ms = performance.now() - t0;
    const top = after.data?.searchSimilar.hits[0];
    expect(top).toMatchObject({
      imageId: added?.imageId,
      productCode: query.productCode,
      defectCode: query.defectCode,
    });
    expect(top?.score).toBeGreaterThan(0.999);
    expect(after.data?.searchSimilar.indexSize).toBe((before.data?.searchSimilar.indexSize ?? 0) + 1);
    console.log(
      `add -> searchable: ${ms.toFixed(0)} ms (add mutation answered, next search ranked it first)`,
    );
    expect(await taskCount()).toBe(tasksBefore);
    // The thumbnail is in object storage, named by content.
    expect(added?.thumbnailUrl).toContain(thumbnailKey(top?.contentSha256 ?? "x"));
  });

  it("refuses a bad image in a batch with its reason and adds the good ones; exact duplicates are refused", async () => {
    const good = web.queries[1];
    const dup = web.gallery[0];
    if (!good || !dup) throw new Error("sample too small");
    const r = await addImages(web.graphqlUrl, [
      {
        file: Buffer.from("this is not an image"),
        productCode: good.productCode,
        defectCode: good.defectCode,
      },
      { file: await readFile(good.path), productCode: good.productCode, defectCode: good.defectCode },
      { file: await readFile(dup.path), productCode: dup.productCode, defectCode: dup.defectCode },
      { file: await readFile(good.path), productCode: "bad code!", defectCode: good.defectCode },
    ]);
    expect(r.errors).toBeUndefined();
    const out = r.data?.addGalleryImages;
    expect(out?.added).toHaveLength(1);
    expect(out?.refused.map((x) => [x.index, x.code])).toEqual([
      [0, "INVALID_IMAGE_FORMAT"],
      [2, "DUPLICATE_IMAGE"],
      [3, "BAD_USER_INPUT"],
    ]);
    expect(out?.refused[1]?.message).toMatch(/already in the gallery as image \d+/);
    // Without the admin token, nothing is added.
    const anon = await addImages(
      web.graphqlUrl,
      [{ file: await readFile(good.path), productCode: "x" }],
      false,
      "wrong-token-wrong-token",
    );
    expect(errorCode(anon)).toBe("FORBIDDEN");
  });

  it("catches a resized, recompressed copy of a gallery image as a near-duplicate, not another image of its class", async () => {
    const original = web.gallery[3];
    // Another image of the same class that is not in the gallery (the sample has more than the test ingests).
    const inGallery = new Set(web.gallery.map((g) => g.path));
    const sibling = (await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") })).find(
      (g) =>
        !inGallery.has(g.path) &&
        g.defectCode === original?.defectCode &&
        g.productCode === original?.productCode,
    );
    if (!original || !sibling) throw new Error("sample too small");
    const bytes = await readFile(original.path);
    const meta = await sharp(bytes).metadata();
    const copy = await sharp(bytes)
      .resize(Math.round((meta.width ?? 100) * 0.8))
      .jpeg({ quality: 80 })
      .toBuffer();
    const skipped = await addImages(
      web.graphqlUrl,
      [{ file: copy, productCode: original.productCode, defectCode: original.defectCode }],
      true,
    );
    expect(skipped.data?.addGalleryImages.refused[0]?.code).toBe("NEAR_DUPLICATE");
    expect(skipped.data?.addGalleryImages.added).toHaveLength(0);
    // The embedding moved (about 0.94, under the model's 0.979); the perceptual hash caught it.
    const originalId = (await search(bytes)).data?.searchSimilar.hits[0]?.imageId;
    const report = skipped.data?.addGalleryImages.nearDuplicates[0];
    expect(report).toMatchObject({ index: 0, imageId: null, neighbourImageId: originalId });
    expect(report?.hashDistance).toBeLessThanOrEqual(6);
    const reported = await addImages(web.graphqlUrl, [
      { file: copy, productCode: original.productCode, defectCode: original.defectCode },
      {
        file: await readFile(sibling.path),
        productCode: sibling.productCode,
        defectCode: sibling.defectCode,
      },
    ]);
    const out = reported.data?.addGalleryImages;
    expect(out?.added).toHaveLength(2);
    expect(out?.nearDuplicates).toHaveLength(1);
    expect(out?.nearDuplicates[0]).toMatchObject({ index: 0, imageId: out?.added[0]?.imageId });
    const groups = await gql<{ nearDuplicates: { similarity: number; images: { imageId: string }[] }[] }>(
      web.graphqlUrl,
      `{ nearDuplicates { similarity images { imageId } } }`,
    );
    const ids = groups.data?.nearDuplicates.flatMap((g) => g.images.map((i) => i.imageId)) ?? [];
    expect(ids).toContain(out?.added[0]?.imageId);
    expect(ids).toContain(out?.nearDuplicates[0]?.neighbourImageId);
    expect(ids).not.toContain(out?.added[1]?.imageId);
  });

  it("relabels and removes: the next search shows the new label, then never returns the image; a restart keeps all three", async () => {
    const query = web.queries[2];
    if (!query) throw new Error("no held-back image");
    const file = await readFile(query.path);
    const r = await addImages(web.graphqlUrl, [
      { file, productCode: query.productCode, defectCode: query.defectCode },
    ]);
    const id = r.data?.addGalleryImages.added[0]?.imageId;
    expect(id).toBeDefined();
    // Relabel into the normal gallery: it leaves the defect index and joins the normal one.
    const relabelled = await admin(RELABEL, { id, p: query.productCode, d: null });
    expect(relabelled.errors).toBeUndefined();
    const asNormal = await search(file, { imageType: "ALL" });
    expect(asNormal.data?.searchSimilar.hits[0]).toMatchObject({
      imageId: id,
      imageType: "NORMAL",
      defectCode: null,
    });
    const defectOnly = await search(file);
    expect(defectOnly.data?.searchSimilar.hits.map((h) => h.imageId)).not.toContain(id);
    // Relabel to a new defect type: created on first use.
    await admin(RELABEL, { id, p: query.productCode, d: "confirmed_new_type" });
    const relabelledHit = (await search(file)).data?.searchSimilar.hits[0];
    expect(relabelledHit).toMatchObject({
      imageId: id,
      defectCode: "confirmed_new_type",
      imageType: "DEFECT",
    });

    // A second image, removed.
    const gone = web.queries[3];
    if (!gone) throw new Error("no held-back image");
    const goneFile = await readFile(gone.path);
    const g = await addImages(web.graphqlUrl, [
      { file: goneFile, productCode: gone.productCode, defectCode: gone.defectCode },
    ]);
    const goneId = g.data?.addGalleryImages.added[0]?.imageId;
    const goneSha = (await search(goneFile)).data?.searchSimilar.hits[0]?.contentSha256;
    expect(await admin(REMOVE, { id: goneId })).toMatchObject({ data: { removeGalleryImage: true } });
    const after = await search(goneFile, { imageType: "ALL", topK: 50 });
    expect(after.data?.searchSimilar.hits.map((h) => h.imageId)).not.toContain(goneId);
    expect(errorCode(await admin(REMOVE, { id: goneId }))).toBe("NOT_FOUND");
    expect(await web.app.blobStore.size(thumbnailKey(goneSha ?? ""))).toBeUndefined();
    // A removed image from the sample gallery itself (in the built index: a tombstone).
    const built = web.gallery[5];
    if (!built) throw new Error("sample too small");
    const builtFile = await readFile(built.path);
    const builtId = (await search(builtFile)).data?.searchSimilar.hits[0]?.imageId;
    expect(await admin(REMOVE, { id: builtId })).toMatchObject({ data: { removeGalleryImage: true } });
    expect(
      (await search(builtFile, { topK: 50 })).data?.searchSimilar.hits.map((h) => h.imageId),
    ).not.toContain(builtId);

    // A restart over the same database and index cache loads the persisted index and replays the log.
    const status = await gql<{
      status: {
        rebuildTasks: unknown[];
        indexes: { imageType: string; version: string; deltaAdded: number; deltaRemoved: number }[];
      };
    }>(web.graphqlUrl, TASKS);
    const tasksBefore = status.data?.status.rebuildTasks.length ?? 0;
    const v2Defect = status.data?.status.indexes.find((i) => i.version === "V2" && i.imageType === "DEFECT");
    expect(v2Defect?.deltaRemoved).toBeGreaterThan(0);
    const second = await createApp(
      {
        ...web.app.config,
        http: { ...web.app.config.http, port: 0 },
        index: { ...web.app.config.index, startupRebuild: "if-needed" },
      },
      testLogger,
    );
    try {
      const server = await second.listen();
      const s = (file: Buffer, extra: Record<string, unknown> = {}) =>
        gql<SearchAnswer>(server.graphqlUrl, SEARCH, {
          input: { image: { base64: file.toString("base64") }, topK: 50, ...extra },
        });
      expect((await s(file)).data?.searchSimilar.hits[0]).toMatchObject({
        imageId: id,
        defectCode: "confirmed_new_type",
      });
      const ids = (await s(goneFile, { imageType: "ALL" })).data?.searchSimilar.hits.map((h) => h.imageId);
      expect(ids).not.toContain(goneId);
      expect((await s(builtFile)).data?.searchSimilar.hits.map((h) => h.imageId)).not.toContain(builtId);
      const st = await gql<{
        status: {
          rebuildTasks: unknown[];
          indexes: { version: string; imageType: string; deltaRemoved: number }[];
        };
      }>(server.graphqlUrl, TASKS);
      expect(st.data?.status.rebuildTasks.length).toBe(tasksBefore);
      expect(
        st.data?.status.indexes.find((i) => i.version === "V2" && i.imageType === "DEFECT")?.deltaRemoved,
      ).toBe(v2Defect?.deltaRemoved);
    } finally {
      await second.close();
    }
  });

  it("never fails a search, nor returns a removed image, while images are added and removed", async () => {
    const probe = await readFile(web.queries[4]?.path ?? "");
    let stop = false;
    const removed = new Set<string>();
    let searches = 0;
    const failures: string[] = [];
    const searcher = async () => {
      while (!stop) {
        const removedBefore = new Set(removed);
        const r = await search(probe, { imageType: "ALL", topK: 50 });
        searches++;
        if (r.errors) failures.push(JSON.stringify(r.errors[0]));
        for (const h of r.data?.searchSimilar.hits ?? [])
          if (h.imageId && removedBefore.has(h.imageId)) failures.push(`removed image ${h.imageId} returned`);
      }
    };
    const running = [searcher(), searcher()];
    const files = web.queries.slice(5, 11);
    for (const q of files) {
      const r = await addImages(web.graphqlUrl, [
        { file: await readFile(q.path), productCode: q.productCode, defectCode: q.defectCode },
      ]);
      const id = r.data?.addGalleryImages.added[0]?.imageId;
      if (!id) continue;
      const rm = await admin(REMOVE, { id });
      expect(rm.errors).toBeUndefined();
      removed.add(id);
    }
    stop = true;
    await Promise.all(running);
    expect(failures).toEqual([]);
    expect(searches).toBeGreaterThan(5);
    expect(removed.size).toBeGreaterThan(3);
  });

  it("groups the hits by defect type: at most perGroup each, by vote share, each group's first hit the best of its type", async () => {
    const GROUPED = /* GraphQL */ `
      query Grouped($input: SearchSimilarInput!) {
        searchSimilar(input: $input) {
          hits { rank imageId productCode defectCode }
          suggestion { productCode defectCode share }
          groups { productCode defectCode share hits { rank imageId score productCode defectCode } }
        }
      }
    `;
    type Answer = {
      searchSimilar: {
        hits: { rank: number; imageId: string; productCode: string; defectCode: string | null }[];
        suggestion: { productCode: string; defectCode: string | null; share: number };
        groups: {
          productCode: string;
          defectCode: string | null;
          share: number;
          hits: { rank: number; imageId: string; productCode: string; defectCode: string | null }[];
        }[];
      };
    };
    const file = await readFile(web.queries[12]?.path ?? "");
    const image = { base64: file.toString("base64") };
    const grouped = await gql<Answer>(web.graphqlUrl, GROUPED, {
      input: { image, imageType: "ALL", topK: 5, groupBy: "DEFECT_TYPE", perGroup: 2 },
    });
    expect(grouped.errors).toBeUndefined();
    const plain = await gql<Answer>(web.graphqlUrl, GROUPED, {
      input: { image, imageType: "ALL", topK: 100 },
    });
    const { groups, hits, suggestion } = grouped.data?.searchSimilar ?? { groups: [], hits: [] };
    expect(hits).toHaveLength(5);
    expect(plain.data?.searchSimilar.groups).toBeNull();
    expect(groups.length).toBeGreaterThan(1);
    for (const g of groups) {
      expect(g.hits.length).toBeGreaterThanOrEqual(1);
      expect(g.hits.length).toBeLessThanOrEqual(2);
      for (const h of g.hits) expect([h.productCode, h.defectCode]).toEqual([g.productCode, g.defectCode]);
    }
    const shares = groups.map((g) => g.share);
    expect(shares).toEqual([...shares].sort((a, b) => b - a));
    expect(groups[0]).toMatchObject({
      productCode: suggestion?.productCode,
      defectCode: suggestion?.defectCode,
    });
    expect(groups[0]?.share).toBeCloseTo(suggestion?.share ?? 0, 6);
    // The union of the groups' first hits is the best hit of each defect type in the plain ranking.
    const bestOfType = new Map<string, string>();
    for (const h of plain.data?.searchSimilar.hits ?? []) {
      const key = `${h.productCode}/${h.defectCode}`;
      if (!bestOfType.has(key)) bestOfType.set(key, h.imageId);
    }
    expect(new Set(groups.map((g) => g.hits[0]?.imageId))).toEqual(new Set(bestOfType.values()));
    const bad = await gql(web.graphqlUrl, GROUPED, { input: { image, groupBy: "DEFECT_TYPE", perGroup: 0 } });
    expect(errorCode(bad)).toBe("BAD_USER_INPUT");
  });
});
