// @ts-check
// Search page: a query image by drop, paste, picker or camera; an optional crop; filters; the results grid,
// or rows by defect type; the suggested defect type; and confirming the image into the gallery.

import {
  $,
  $button,
  $input,
  $select,
  ApiError,
  adminToken,
  describeError,
  el,
  gql,
  gqlUpload,
  labelOf,
  setStatus,
  thumbnailOf,
} from "./shared.js";

/** @typedef {import("./types.js").SearchHit} SearchHit */
/** @typedef {import("./types.js").SearchResult} SearchResult */
/** @typedef {import("./types.js").Suggestion} Suggestion */
/** @typedef {import("./types.js").HitGroup} HitGroup */

const HIT_FIELDS = `rank score space imageId imageType productCode productName defectCode defectName filePath
  downloadUrl thumbnailUrl contentSha256`;
/** The search document (`variables.input`: SearchSimilarInput); the admin page's V1/V2 comparison uses it too. */
export const SEARCH = `query Search($input: SearchSimilarInput!) {
  searchSimilar(input: $input) { version imageType indexSize tookMs space
    suggestion { productCode defectCode defectName share votes } hits { ${HIT_FIELDS} }
    groups { productCode defectCode defectName share hits { ${HIT_FIELDS} } } }
}`;

/** A crop of the query image, in natural-image pixels. @typedef {{ x: number, y: number, width: number, height: number }} Crop */

/**
 * The query of the page.
 * @type {{ file: File | null, objectUrl: string | null, crop: Crop | null, searchedGalleryImage?: boolean }}
 */
const query = { file: null, objectUrl: null, crop: null };

/** @param {File | null | undefined} file */
function setQueryFile(file) {
  if (!file) return;
  query.file = file;
  query.crop = null;
  if (query.objectUrl) URL.revokeObjectURL(query.objectUrl);
  query.objectUrl = URL.createObjectURL(file);
  const img = $("query-preview", HTMLImageElement);
  img.src = query.objectUrl;
  img.alt = `Query: ${file.name ?? "pasted"}`;
  $("crop-area").hidden = false;
  $("crop-box").hidden = true;
  $("crop-info").textContent = "";
  $("search-query-note").textContent = "";
  // Results of the previous query would read as answers to this one.
  $("results").replaceChildren();
  renderSuggestion(null);
  setStatus($("search-status"), `Query image: ${file.name ?? "pasted image"}. Press Search.`);
}

function setupQueryInput() {
  const zone = $("drop-zone");
  const input = $input("file-input");
  input.addEventListener("change", () => setQueryFile(input.files?.[0]));
  $("choose-file").addEventListener("click", () => input.click());
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    setQueryFile(e.dataTransfer?.files?.[0]);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === "file");
    if (item) setQueryFile(item.getAsFile());
  });
}

/** Crop by dragging a rectangle on the preview; kept in natural-image pixels. */
function setupCrop() {
  const img = $("query-preview", HTMLImageElement);
  const box = $("crop-box");
  const stage = $("crop-stage");
  /** @type {{ x: number, y: number, r: DOMRect } | null} */
  let start = null;
  /** @param {PointerEvent} e */
  const toImage = (e) => {
    const r = img.getBoundingClientRect();
    const x = Math.min(Math.max(e.clientX - r.left, 0), r.width);
    const y = Math.min(Math.max(e.clientY - r.top, 0), r.height);
    return { x, y, r };
  };
  img.addEventListener("dragstart", (e) => e.preventDefault());
  stage.addEventListener("pointerdown", (e) => {
    if (!query.file) return;
    start = toImage(e);
    stage.setPointerCapture(e.pointerId);
  });
  stage.addEventListener("pointermove", (e) => {
    if (!start) return;
    const p = toImage(e);
    const left = Math.min(start.x, p.x);
    const top = Math.min(start.y, p.y);
    Object.assign(box.style, {
      left: `${left}px`,
      top: `${top}px`,
      width: `${Math.abs(p.x - start.x)}px`,
      height: `${Math.abs(p.y - start.y)}px`,
    });
    box.hidden = false;
  });
  stage.addEventListener("pointerup", (e) => {
    if (!start) return;
    const p = toImage(e);
    const sx = img.naturalWidth / p.r.width;
    const sy = img.naturalHeight / p.r.height;
    const crop = {
      x: Math.round(Math.min(start.x, p.x) * sx),
      y: Math.round(Math.min(start.y, p.y) * sy),
      width: Math.round(Math.abs(p.x - start.x) * sx),
      height: Math.round(Math.abs(p.y - start.y) * sy),
    };
    start = null;
    // A click, not a drag: keep the whole image.
    if (crop.width < 8 || crop.height < 8) {
      clearCrop();
      return;
    }
    query.crop = crop;
    $("crop-info").textContent =
      `Searching the region ${crop.width}x${crop.height} px at (${crop.x}, ${crop.y}).`;
  });
  $("crop-clear").addEventListener("click", clearCrop);
}

function clearCrop() {
  query.crop = null;
  $("crop-box").hidden = true;
  $("crop-info").textContent = "Searching the whole image.";
}

/**
 * The query file, or its crop as a PNG (lossless, so the crop adds no artefacts of its own).
 * @returns {Promise<File>}
 */
async function queryBlob() {
  if (!query.file) throw new Error("No query image.");
  if (!query.crop) return query.file;
  const img = $("query-preview", HTMLImageElement);
  const { x, y, width, height } = query.crop;
  const canvas = el("canvas", { width, height });
  canvas.getContext("2d")?.drawImage(img, x, y, width, height, 0, 0, width, height);
  /** @type {Blob | null} */
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  if (!blob) throw new Error("The crop could not be encoded.");
  return new File([blob], "crop.png", { type: "image/png" });
}

/** The form's options as SearchSimilarInput fields (all but the image). */
function searchOptions() {
  /** @type {Record<string, unknown> & { filter?: { productCodes?: string[], defectCodes?: string[] } }} */
  const input = {
    imageType: $select("image-type").value,
    topK: Number($input("top-k").value) || 12,
  };
  const space = $select("space").value;
  if (space) input.space = space;
  const minScore = $input("min-score").value;
  if (minScore !== "") input.minScore = Number(minScore);
  const product = $select("product-filter").value;
  const defect = $select("defect-filter").value;
  if (product || defect) {
    input.filter = {};
    if (product) input.filter.productCodes = [product];
    if (defect) input.filter.defectCodes = [defect];
  }
  if ($input("group-by").checked) {
    input.groupBy = "DEFECT_TYPE";
    input.perGroup = 3;
  }
  return input;
}

/**
 * Runs one search and shows its answer (or its error).
 * @param {string} describe - what was searched, for the status line
 * @param {() => Promise<{ searchSimilar: SearchResult }>} send
 */
async function runSearch(describe, send) {
  const status = $("search-status");
  const button = $button("search-button");
  button.disabled = true;
  $("results").setAttribute("aria-busy", "true");
  setStatus(status, `Searching ${describe}...`, "busy");
  try {
    const { searchSimilar: r } = await send();
    renderGroups(r.groups);
    renderResults($("results"), r.groups ? [] : r.hits);
    renderSuggestion(r.suggestion);
    offerConfirm(r.suggestion);
    setStatus(
      status,
      `${r.hits.length} similar ${r.imageType === "ALL" ? "defect and normal" : r.imageType.toLowerCase()} images for ${describe}, from ${r.indexSize} (matcher ${r.version}, ${r.space === "ADAPTED" ? "adapted space" : "raw embedding"}, ${r.tookMs.toFixed(0)} ms).`,
      "ok",
    );
  } catch (e) {
    $("results").replaceChildren();
    renderGroups(null);
    renderSuggestion(null);
    offerConfirm(null);
    setStatus(status, describeError(e), "error");
  } finally {
    button.disabled = false;
    $("results").removeAttribute("aria-busy");
  }
}

/** "What defect is this?": the similarity-weighted vote of the top hits, with its share. @param {Suggestion | null} s */
function renderSuggestion(s) {
  const node = $("suggestion");
  node.hidden = !s;
  if (!s) return;
  const label = s.defectCode ? (s.defectName ?? s.defectCode) : "Normal (no defect)";
  node.replaceChildren(
    el("span", { text: "Likely defect type: " }),
    el("strong", { text: label }),
    el("span", { text: ` (${Math.round(s.share * 100)}% of the weighted vote of the top ${s.votes} hits)` }),
  );
}

/** @param {HTMLElement} list @param {SearchHit[]} hits */
function renderResults(list, hits) {
  list.replaceChildren(
    ...hits.map((h) => {
      const product = h.productName ?? h.productCode;
      const thumb = thumbnailOf(h, product);
      const actions = el("div", { className: "actions" });
      const imageId = h.imageId;
      if (imageId)
        actions.append(
          el("button", {
            type: "button",
            text: "Find similar",
            "aria-label": `Find images similar to result ${h.rank}`,
            onclick: () => searchByGalleryImage(imageId, `result ${h.rank} (${product}, ${labelOf(h)})`),
          }),
        );
      if (h.downloadUrl)
        actions.append(el("a", { href: h.downloadUrl, target: "_blank", rel: "noopener", text: "Original" }));
      return el(
        "li",
        { className: "card", "data-rank": String(h.rank), "data-image-id": h.imageId },
        thumb,
        el(
          "div",
          { className: "meta" },
          el("span", { className: "rank", text: `#${h.rank}` }),
          el("span", {
            className: "score",
            text: h.score.toFixed(3),
            title:
              h.space === "ADAPTED"
                ? "similarity in the adapted space (learned from the gallery's labels)"
                : "cosine similarity of the embeddings",
          }),
        ),
        el("div", { className: "label product", text: product }),
        el("div", { className: `label defect ${h.defectCode ? "" : "normal"}`, text: labelOf(h) }),
        actions,
      );
    }),
  );
}

/** Results by defect type: one row per group, with its share of the vote. @param {HitGroup[] | null} groups */
function renderGroups(groups) {
  const node = $("groups");
  if (!groups) {
    node.replaceChildren();
    return;
  }
  node.replaceChildren(
    ...groups.map((g) => {
      const list = el("ol", { className: "grid group-row" });
      renderResults(list, g.hits);
      return el(
        "section",
        { className: "group", "data-defect": g.defectCode ?? "normal" },
        el("h3", {
          text: `${g.defectCode ? (g.defectName ?? g.defectCode) : "Normal"} (${g.productCode}), ${Math.round(g.share * 100)}% of the vote`,
        }),
        list,
      );
    }),
  );
}

/**
 * After a search of an uploaded image, the inspector can add it to the gallery with the defect type they
 * confirm, pre-filled with the suggestion: this is how the gallery learns.
 * @param {Suggestion | null} suggestion
 */
function offerConfirm(suggestion) {
  const form = $("confirm-form");
  form.hidden = !suggestion || !query.file || Boolean(query.searchedGalleryImage);
  setStatus($("confirm-status"), "");
  if (form.hidden || !suggestion) return;
  $input("confirm-product").value = suggestion.productCode;
  $input("confirm-defect").value = suggestion.defectCode ?? "normal";
}

/** @param {SubmitEvent} e */
async function confirmIntoGallery(e) {
  e.preventDefault();
  const status = $("confirm-status");
  const button = $button("confirm-button");
  if (!adminToken()) {
    setStatus(status, "Adding to the gallery needs the admin token (Admin page).", "error");
    return;
  }
  button.disabled = true;
  setStatus(status, "Adding...", "busy");
  try {
    const defect = $input("confirm-defect").value.trim();
    /** @type {{ addGalleryImages: { added: { imageId: string }[], refused: { code: string, message: string }[],
     *   nearDuplicates: { neighbourImageId: string, similarity: number }[] } }} */
    const { addGalleryImages: r } = await gqlUpload(
      `mutation Add($images: [GalleryImageInput!]!) { addGalleryImages(images: $images) {
        added { imageId productCode defectCode } refused { code message }
        nearDuplicates { neighbourImageId similarity } } }`,
      {
        images: [
          {
            file: null,
            productCode: $input("confirm-product").value.trim(),
            defectCode: defect === "" || defect === "normal" ? null : defect,
          },
        ],
      },
      await queryBlob(),
      "variables.images.0.file",
      { admin: true },
    );
    const added = r.added[0];
    if (!added) {
      const refused = r.refused[0];
      setStatus(status, describeError(new ApiError(refused?.message ?? "not added", refused?.code)), "error");
      return;
    }
    const dup = r.nearDuplicates[0];
    setStatus(
      status,
      `Added as gallery image ${added.imageId}; searchable now.${dup ? ` It is a near-duplicate of image ${dup.neighbourImageId} (similarity ${dup.similarity.toFixed(3)}): review it on the Gallery page.` : ""}`,
      "ok",
    );
  } catch (err) {
    setStatus(status, describeError(err), "error");
  } finally {
    button.disabled = false;
  }
}

/**
 * Searches with a gallery image (left out of its own results), on the Search page.
 * @param {string} imageId
 * @param {string} describe - which image, for the status line
 */
export function searchByGalleryImage(imageId, describe) {
  if (location.hash !== "#search") location.hash = "#search";
  $("search-query-note").textContent =
    `Query: gallery image ${imageId} (${describe}); it is left out of its own results.`;
  query.searchedGalleryImage = true;
  return runSearch(describe, () =>
    gql(SEARCH, { input: { ...searchOptions(), image: { galleryImageId: String(imageId) } } }),
  );
}

/** Wires the Search page: query input, crop, the search form and the confirm form. */
export function setupSearch() {
  setupQueryInput();
  setupCrop();
  $("search-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!query.file) {
      setStatus($("search-status"), "Choose, drop or paste a query image first.", "error");
      $("choose-file").focus();
      return;
    }
    const file = await queryBlob();
    query.searchedGalleryImage = false;
    const describe = query.crop ? "the cropped region" : `'${query.file.name ?? "pasted image"}'`;
    $("search-query-note").textContent = "";
    await runSearch(describe, () =>
      gqlUpload(
        SEARCH,
        { input: { ...searchOptions(), image: { file: null } } },
        file,
        "variables.input.image.file",
      ),
    );
  });
  $("confirm-form").addEventListener("submit", confirmIntoGallery);
}
