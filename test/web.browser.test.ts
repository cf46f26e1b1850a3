import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL_PRESETS } from "../src/config/model-presets.js";
import { gql, SEARCH, type SearchAnswer } from "./support/graphql-client.js";
import { REPO_ROOT } from "./support/services.js";
import { startWebGallery, WEB_ADMIN_TOKEN, type WebGallery } from "./support/web-gallery.js";

/** Debian's Chromium (`apt-get install chromium`, done by .ci/run); CHROMIUM_PATH overrides it. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Screenshots of each screen, for people to look at (git-ignored). */
const SHOTS = path.join(REPO_ROOT, "test-output", "screenshots");
/** A tablet in portrait: the size inspectors use on the line. */
const TABLET = { width: 820, height: 1180 };

describe("the web app in a real browser (Chromium), on a real gallery", () => {
  let web: WebGallery;
  let browser: Browser;
  let page: Page;
  const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  const apiSearch = async (file: string, topK: number) =>
    (
      await gql<SearchAnswer>(web.graphqlUrl, SEARCH, {
        input: { image: { base64: (await readFile(file)).toString("base64") }, topK },
      })
    ).data?.searchSimilar;
  /** The rank, product and defect-type text of each result card. */
  const cards = () =>
    page.$$eval("#results li.card", (lis) =>
      lis.map((li) => ({
        rank: li.getAttribute("data-rank"),
        defect: li.querySelector(".label.defect")?.textContent ?? "",
      })),
    );

  beforeAll(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(`No Chromium at ${CHROMIUM}: run 'apt-get install -y chromium' (as .ci/run does).`);
    await mkdir(SHOTS, { recursive: true });
    [web, browser] = await Promise.all([
      startWebGallery(15),
      chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
      }),
    ]);
    page = await browser.newPage({ viewport: TABLET });
    page.setDefaultTimeout(20_000);
  });
  afterAll(async () => {
    await browser?.close();
    await web?.stop();
  });

  it("uploads a real defect image and shows ranked results with thumbnails", async () => {
    const query = web.queries[0]?.path ?? "";
    await page.goto(web.url);
    await page.waitForSelector("body[data-ready='true']");
    expect(await page.locator("#defect-filter option").count()).toBeGreaterThan(2);
    await page.fill("#top-k", "8");
    await page.setInputFiles("#file-input", query);
    await page.click("#search-button");
    await page.waitForSelector("#search-status[data-kind='ok']");
    const shown = await cards();
    expect(shown.map((c) => c.rank)).toEqual(["1", "2", "3", "4", "5", "6", "7", "8"]);
    // The page shows what the API ranks for the same image.
    const api = await apiSearch(query, 8);
    expect(shown.map((c) => c.defect)).toEqual(api?.hits.map((h) => h.defectName));
    // With it, the likely defect type by the vote of the top hits.
    const suggestion = (
      await gql<{ searchSimilar: { suggestion: { defectName: string; share: number; votes: number } } }>(
        web.graphqlUrl,
        "query($input: SearchSimilarInput!) { searchSimilar(input: $input) { suggestion { defectName share votes } } }",
        { input: { image: { base64: (await readFile(query)).toString("base64") }, topK: 8 } },
      )
    ).data?.searchSimilar.suggestion;
    expect(await page.textContent("#suggestion")).toBe(
      `Likely defect type: ${suggestion?.defectName} (${Math.round((suggestion?.share ?? 0) * 100)}% of the weighted vote of the top ${suggestion?.votes} hits)`,
    );
    // Every thumbnail loaded from object storage, and no original was fetched.
    // (Predicates run as functions, not strings: the page's CSP forbids eval, which string predicates need.)
    await expect
      .poll(() =>
        page.$$eval("#results img.thumb", (imgs) =>
          imgs.every((i) => {
            const img = i as unknown as { complete: boolean; naturalWidth: number };
            return img.complete && img.naturalWidth > 0;
          }),
        ),
      )
      .toBe(true);
    const sources = await page.$$eval("#results img.thumb", (imgs) => imgs.map((i) => i.getAttribute("src")));
    expect(sources).toHaveLength(8);
    for (const src of sources) expect(src).toMatch(/\/thumbnails\/[0-9a-f]{2}\/[0-9a-f]{64}\.jpg\?/);
    await shot("search-results");
  });

  it("searches for images similar to a clicked result", async () => {
    const first = page.locator("#results li.card").first();
    const imageId = await first.getAttribute("data-image-id");
    expect(imageId).toMatch(/^\d+$/);
    await first.getByRole("button", { name: /Find images similar to result 1/ }).click();
    await page.waitForSelector("#search-status[data-kind='ok']:has-text('result 1')");
    expect(await page.textContent("#search-query-note")).toMatch(/left out of its own results/);
    const api = await gql<SearchAnswer>(web.graphqlUrl, SEARCH, {
      input: { image: { galleryImageId: imageId }, topK: 8 },
    });
    const ids = await page.$$eval("#results li.card", (lis) =>
      lis.map((li) => li.getAttribute("data-image-id")),
    );
    expect(ids).toEqual(api.data?.searchSimilar.hits.map((h) => h.imageId));
    expect(ids).not.toContain(imageId);
    await shot("find-similar");
  });

  it("searches both galleries in one ranking when asked (image type: both), as the API ranks them", async () => {
    const query = web.queries[1]?.path ?? "";
    await page.selectOption("#image-type", "ALL");
    await page.setInputFiles("#file-input", query);
    await page.click("#search-button");
    await page.waitForSelector("#search-status[data-kind='ok']:has-text('defect and normal')");
    const api = await gql<SearchAnswer>(web.graphqlUrl, SEARCH, {
      input: { image: { base64: (await readFile(query)).toString("base64") }, topK: 8, imageType: "ALL" },
    });
    expect(api.data?.searchSimilar.imageType).toBe("ALL");
    const ids = await page.$$eval("#results li.card", (lis) =>
      lis.map((li) => li.getAttribute("data-image-id")),
    );
    expect(ids).toEqual(api.data?.searchSimilar.hits.map((h) => h.imageId));
    await page.selectOption("#image-type", "DEFECT");
  });

  it("crops a region and searches with the crop only", async () => {
    // A PNG, so the browser and sharp decode the same pixels and the server-side crop below is exact.
    const query = path.join(SHOTS, "..", "crop-query.png");
    await sharp(web.queries[1]?.path ?? "")
      .png()
      .toFile(query);
    await page.setInputFiles("#file-input", query);
    const box = await page.locator("#query-preview").boundingBox();
    if (!box) throw new Error("no preview");
    await page.mouse.move(box.x + box.width * 0.1, box.y + box.height * 0.1);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.7, { steps: 5 });
    await page.mouse.up();
    const info = (await page.textContent("#crop-info")) ?? "";
    const m = info.match(/region (\d+)x(\d+) px at \((\d+), (\d+)\)/);
    if (!m) throw new Error(`no crop shown: '${info}'`);
    const [width, height, left, top] = m.slice(1).map(Number) as [number, number, number, number];
    await shot("crop");
    await page.click("#search-button");
    await page.waitForSelector("#search-status[data-kind='ok']:has-text('cropped region')");
    // The same region cut on the server side ranks the same gallery images: the query was the crop.
    const crop = await sharp(query).extract({ left, top, width, height }).png().toBuffer();
    const api = await gql<SearchAnswer>(web.graphqlUrl, SEARCH, {
      input: { image: { base64: crop.toString("base64") }, topK: 8 },
    });
    const ids = await page.$$eval("#results li.card", (lis) =>
      lis.map((li) => li.getAttribute("data-image-id")),
    );
    expect(ids).toEqual(api.data?.searchSimilar.hits.map((h) => h.imageId));
    const whole = await apiSearch(query, 8);
    expect(ids).not.toEqual(whole?.hits.map((h) => h.imageId));
  });

  it("shows the API's error for a file that is not an image", async () => {
    await page.setInputFiles("#file-input", {
      name: "notes.txt",
      mimeType: "text/plain",
      buffer: Buffer.from("Line 3, part 17: scratch near the edge. Not a photo."),
    });
    await page.click("#search-button");
    await page.waitForSelector("#search-status[data-kind='error']");
    expect(await page.textContent("#search-status")).toMatch(/not an image.*INVALID_IMAGE_FORMAT/s);
    expect(await page.locator("#results li").count()).toBe(0);
    await shot("error-not-an-image");
  });

  it("browses the gallery by defect type and searches from a gallery image", async () => {
    await page.goto(`${web.url}#gallery`);
    await page.waitForSelector("#gallery-status[data-kind='ok']");
    const total = Number((await page.textContent("#gallery-status"))?.match(/of (\d+) images/)?.[1]);
    expect(total).toBe(new Set(web.gallery.map((g) => g.path)).size);
    expect(await page.locator("#gallery-grid li").count()).toBe(24);
    await page.click("#gallery-more");
    await expect.poll(() => page.locator("#gallery-grid li").count()).toBeGreaterThan(24);
    const option = await page.locator("#gallery-defect option").nth(2);
    const label = ((await option.textContent()) ?? "").replace(/ \(\d+\)$/, "");
    await page.selectOption("#gallery-defect", (await option.getAttribute("value")) ?? "");
    await page.click("#gallery-form button[type=submit]");
    await page.waitForSelector("#gallery-status[data-kind='ok']");
    const defects = await page.$$eval("#gallery-grid .label.defect", (els) => els.map((e) => e.textContent));
    expect(defects.length).toBeGreaterThan(0);
    expect(new Set(defects)).toEqual(new Set([label]));
    await shot("gallery");
    await page
      .locator("#gallery-grid li")
      .first()
      .getByRole("button", { name: /Find images similar/ })
      .click();
    await page.waitForSelector("#view-search:not([hidden]) #search-status[data-kind='ok']");
    expect((await cards()).length).toBeGreaterThan(0);
  });

  it("logs in as admin, rebuilds with progress to done, and switches V1/V2", async () => {
    await page.goto(`${web.url}#admin`);
    await page.fill("#admin-token", WEB_ADMIN_TOKEN);
    await page.click("#admin-login button[type=submit]");
    await page.waitForSelector("#index-table tbody tr");
    expect(await page.evaluate("sessionStorage.getItem('defect-lens.adminToken')")).toBe(WEB_ADMIN_TOKEN);
    expect(await page.evaluate("localStorage.length")).toBe(0);
    expect(await page.locator("#index-table tbody tr").count()).toBe(4);

    await page.selectOption("#rebuild-version", "V2");
    await page.click("#rebuild-button");
    await page.waitForSelector("#rebuild-state[data-kind='ok']", { timeout: 60_000 });
    expect(await page.textContent("#rebuild-state")).toMatch(/^Done: \d+ images/);
    const progress = [
      await page.getAttribute("#rebuild-progress", "value"),
      await page.getAttribute("#rebuild-progress", "max"),
    ];
    expect(Number(progress[0])).toBeGreaterThan(0);
    expect(progress[0]).toBe(progress[1]);
    await shot("admin-rebuild-done");

    await page.click("#switch-v1");
    await page.waitForSelector("#active-version:has-text('V1')");
    const status = await gql<{ status: { activeVersion: string } }>(
      web.graphqlUrl,
      "{ status { activeVersion } }",
    );
    expect(status.data?.status.activeVersion).toBe("V1");
    await page.click("#switch-v2");
    await page.waitForSelector("#active-version:has-text('V2')");
    expect(await page.getAttribute("#switch-v2", "aria-pressed")).toBe("true");
  });

  it("lists the embedding models on the admin page, the active one with its model id", async () => {
    // Registering a candidate would re-embed the gallery: the migration itself is tested through the API.
    const models = await gql<{ models: { modelId: string; state: string }[] }>(
      web.graphqlUrl,
      "{ models { modelId state } }",
      {},
      WEB_ADMIN_TOKEN,
    );
    const active = models.data?.models.find((m) => m.state === "ACTIVE");
    expect(active?.modelId).toBeTruthy();
    const row = page.locator("#model-table tbody tr[data-state='ACTIVE']");
    await row.waitFor();
    expect(await row.locator("td.state").textContent()).toBe("ACTIVE");
    expect(await row.locator("td.model-id").textContent()).toBe(active?.modelId);
    expect(await page.locator("#model-table tbody tr").count()).toBe(models.data?.models.length);
    // The register form offers the service's presets.
    expect(await page.$$eval("#model-preset option", (os) => os.map((o) => o.getAttribute("value")))).toEqual(
      Object.keys(MODEL_PRESETS),
    );
    await shot("admin-models");
  });

  it("compares V1 and V2 on one query image, side by side", async () => {
    await page.setInputFiles("#compare-file", web.queries[0]?.path ?? "");
    await page.click("#compare-form button[type=submit]");
    await page.waitForSelector("#compare-result:not([hidden])");
    expect(await page.locator("#compare-v1 li").count()).toBe(5);
    expect(await page.locator("#compare-v2 li").count()).toBe(5);
    // V1 and V2 hold the same images, so they agree.
    expect(await page.textContent("#compare-status")).toMatch(
      /^Agree at rank 1\. Same labels at 5 of 5 ranks/,
    );
    await shot("admin-compare");
  });

  it("confirms a searched image into the gallery, finds it at rank 1, and groups the results by defect type", async () => {
    const query = web.queries[3];
    if (!query) throw new Error("no held-back image");
    const search = async () => {
      await page.$eval("#search-status", (node) => {
        (node as unknown as { dataset: Record<string, string> }).dataset.kind = "";
      });
      await page.click("#search-button");
      await page.waitForSelector("#search-status[data-kind='ok']");
    };
    await page.evaluate("location.hash = '#search'");
    await page.setInputFiles("#file-input", query.path);
    await search();
    // The confirm form is pre-filled with the suggestion.
    await page.waitForSelector("#confirm-form:not([hidden])");
    const api = await apiSearch(query.path, 8);
    expect(await page.inputValue("#confirm-product")).toBe(api?.suggestion?.productCode);
    expect(await page.inputValue("#confirm-defect")).toBe(api?.suggestion?.defectCode ?? "normal");
    await page.fill("#confirm-defect", query.defectCode ?? "normal");
    await page.click("#confirm-button");
    await page.waitForSelector("#confirm-status[data-kind='ok']");
    const added = (await page.textContent("#confirm-status"))?.match(/Added as gallery image (\d+)/)?.[1];
    expect(added).toMatch(/^\d+$/);
    await shot("confirm-added");
    await search();
    expect(await page.locator("#results li.card").first().getAttribute("data-image-id")).toBe(added);
    // Grouped: one row per defect type, at most three hits each.
    await page.check("#group-by");
    await search();
    const rows = await page.$$eval("#groups section.group", (groups) =>
      groups.map((g) => g.querySelectorAll("li.card").length),
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const n of rows) expect(n).toBeLessThanOrEqual(3);
    expect(
      await page
        .locator("#groups section.group")
        .first()
        .locator("li.card")
        .first()
        .getAttribute("data-image-id"),
    ).toBe(added);
    await shot("search-grouped");
    await page.uncheck("#group-by");
  });

  it("opens GraphiQL with no network beyond the service, and runs a query", async () => {
    const foreign: string[] = [];
    const blocked: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(web.url) && !r.url().startsWith("data:")) foreign.push(r.url());
    });
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) blocked.push(m.text());
    });
    await page.goto(`${web.url}graphiql`);
    await page.waitForSelector(".graphiql-container");
    await page.click(".graphiql-execute-button");
    await page.waitForSelector(".graphiql-response :text('activeVersion')");
    await shot("graphiql");
    expect(foreign).toEqual([]);
    expect(blocked).toEqual([]);
    await page.goto(`${web.url}#admin`);
  });

  it("refuses admin actions without the token and says so", async () => {
    await page.click("#admin-logout");
    await page.click("#switch-v1");
    await page.waitForSelector("#admin-status[data-kind='error']");
    expect(await page.textContent("#admin-status")).toMatch(/UNAUTHENTICATED/);
    expect(await page.locator("#model-table tbody tr").count()).toBe(0);
  });
});
