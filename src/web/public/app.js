// defect-lens web app: plain ES modules, no build step, talking to the service's own GraphQL API.
// Every value from the API is put into the page with textContent or attributes, never as HTML.

const GRAPHQL = "/graphql";
const TOKEN_KEY = "defect-lens.adminToken";

/** An error the API returned, with its stable extensions.code. */
class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === "text") node.textContent = v;
    else if (k === "className") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

async function readAnswer(res) {
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(
      `The server answered HTTP ${res.status} without a readable body.`,
      `HTTP_${res.status}`,
    );
  }
  const first = body.errors?.[0];
  if (first) throw new ApiError(first.message, first.extensions?.code ?? "ERROR");
  return body.data;
}

function adminHeaders(admin) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return admin && token ? { authorization: `Bearer ${token}` } : {};
}

/** A GraphQL operation as JSON. */
async function gql(query, variables = {}, { admin = false } = {}) {
  const res = await fetch(GRAPHQL, {
    method: "POST",
    headers: { "content-type": "application/json", ...adminHeaders(admin) },
    body: JSON.stringify({ query, variables }),
  });
  return readAnswer(res);
}

/**
 * A GraphQL operation with one file, as a multipart request (graphql-multipart-request-spec): the image
 * travels as bytes, not base64. The preflight header is Apollo's CSRF rule.
 */
async function gqlUpload(query, variables, file, filePath, { admin = false } = {}) {
  const form = new FormData();
  form.append("operations", JSON.stringify({ query, variables }));
  form.append("map", JSON.stringify({ 0: [filePath] }));
  form.append("0", file, file.name ?? "query-image");
  const res = await fetch(GRAPHQL, {
    method: "POST",
    headers: { "apollo-require-preflight": "true", ...adminHeaders(admin) },
    body: form,
  });
  return readAnswer(res);
}

const HIT_FIELDS = `rank score space imageId imageType productCode productName defectCode defectName filePath
  downloadUrl thumbnailUrl contentSha256`;
const SEARCH = `query Search($input: SearchSimilarInput!) {
  searchSimilar(input: $input) { version imageType indexSize tookMs space
    suggestion { productCode defectCode defectName share votes } hits { ${HIT_FIELDS} }
    groups { productCode defectCode defectName share hits { ${HIT_FIELDS} } } }
}`;

/** "Too large", "not an image", "index not ready": the API's own words, with what to do. */
function describeError(e) {
  const hints = {
    IMAGE_TOO_LARGE: "The image is too large.",
    IMAGE_TOO_SMALL: "The image is too small.",
    INVALID_IMAGE_FORMAT: "That file is not an image the service can read.",
    INDEX_NOT_READY: "The index is not ready yet.",
    OVERLOADED: "The service is busy.",
    UNAUTHENTICATED: "An admin token is needed.",
    FORBIDDEN: "The admin token was refused.",
  };
  const lead = hints[e.code] ? `${hints[e.code]} ` : "";
  return `${lead}${e.message}${e.code ? ` (${e.code})` : ""}`;
}

function setStatus(node, text, kind = "info") {
  node.textContent = text;
  node.dataset.kind = kind;
}

// ---------------------------------------------------------------- views

function showView(name) {
  const view = ["search", "gallery", "admin"].includes(name) ? name : "search";
  for (const s of document.querySelectorAll("[data-view]")) s.hidden = s.dataset.view !== view;
  for (const a of document.querySelectorAll("[data-view-link]")) {
    if (a.dataset.viewLink === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (view === "admin") refreshStatus();
  if (view === "gallery" && !$("gallery-grid").hasChildNodes()) loadGallery(true);
  if (view === "gallery") loadDuplicates();
}

window.addEventListener("hashchange", () => showView(location.hash.slice(1)));

// ---------------------------------------------------------------- labels for the filters

async function loadLabels() {
  try {
    const data = await gql(`{ products { productCode productName imageCount }
      defectTypes { defectCode defectName imageCount } }`);
    for (const select of [$("product-filter"), $("gallery-product")]) {
      for (const p of data.products)
        select.append(el("option", { value: p.productCode, text: `${p.productName} (${p.imageCount})` }));
    }
    for (const select of [$("defect-filter"), $("gallery-defect")]) {
      select.append(el("option", { value: "normal", text: "Normal (no defect)" }));
      for (const d of data.defectTypes)
        select.append(el("option", { value: d.defectCode, text: `${d.defectName} (${d.imageCount})` }));
    }
    // The confirm form suggests the codes the gallery has; new ones are created on first use.
    $("product-codes").replaceChildren(...data.products.map((p) => el("option", { value: p.productCode })));
    $("defect-codes").replaceChildren(
      el("option", { value: "normal" }),
      ...data.defectTypes.map((d) => el("option", { value: d.defectCode })),
    );
  } catch (e) {
    setStatus($("search-status"), `Filters unavailable: ${describeError(e)}`, "error");
  }
}

// ---------------------------------------------------------------- search page

const query = { file: null, objectUrl: null, crop: null };

function setQueryFile(file) {
  if (!file) return;
  query.file = file;
  query.crop = null;
  if (query.objectUrl) URL.revokeObjectURL(query.objectUrl);
  query.objectUrl = URL.createObjectURL(file);
  const img = $("query-preview");
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
  $("file-input").addEventListener("change", (e) => setQueryFile(e.target.files?.[0]));
  $("choose-file").addEventListener("click", () => $("file-input").click());
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
  const img = $("query-preview");
  const box = $("crop-box");
  let start = null;
  const toImage = (e) => {
    const r = img.getBoundingClientRect();
    const x = Math.min(Math.max(e.clientX - r.left, 0), r.width);
    const y = Math.min(Math.max(e.clientY - r.top, 0), r.height);
    return { x, y, r };
  };
  img.addEventListener("dragstart", (e) => e.preventDefault());
  $("crop-stage").addEventListener("pointerdown", (e) => {
    if (!query.file) return;
    start = toImage(e);
    e.currentTarget.setPointerCapture(e.pointerId);
  });
  $("crop-stage").addEventListener("pointermove", (e) => {
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
  $("crop-stage").addEventListener("pointerup", (e) => {
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

/** The query file, or its crop as a PNG (lossless, so the crop adds no artefacts of its own). */
async function queryBlob() {
  if (!query.crop) return query.file;
  const img = $("query-preview");
  const { x, y, width, height } = query.crop;
  const canvas = el("canvas", { width, height });
  canvas.getContext("2d").drawImage(img, x, y, width, height, 0, 0, width, height);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  return new File([blob], "crop.png", { type: "image/png" });
}

function searchOptions() {
  const input = {
    imageType: $("image-type").value,
    topK: Number($("top-k").value) || 12,
  };
  if ($("space").value) input.space = $("space").value;
  const minScore = $("min-score").value;
  if (minScore !== "") input.minScore = Number(minScore);
  const product = $("product-filter").value;
  const defect = $("defect-filter").value;
  if (product || defect) {
    input.filter = {};
    if (product) input.filter.productCodes = [product];
    if (defect) input.filter.defectCodes = [defect];
  }
  if ($("group-by").checked) {
    input.groupBy = "DEFECT_TYPE";
    input.perGroup = 3;
  }
  return input;
}

async function runSearch(describe, send) {
  const status = $("search-status");
  const button = $("search-button");
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

/** "What defect is this?": the similarity-weighted vote of the top hits, with its share. */
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

function labelOf(hit) {
  return hit.defectCode ? (hit.defectName ?? hit.defectCode) : "Normal";
}

/** A grid cell's picture: the presigned thumbnail, or a placeholder until the thumbnail exists. */
function thumbnailOf(item, product) {
  if (!item.thumbnailUrl)
    return el("div", {
      className: "thumb placeholder",
      text: "no thumbnail yet",
      role: "img",
      "aria-label": "No thumbnail yet",
    });
  const img = el("img", {
    src: item.thumbnailUrl,
    alt: `${product}, ${labelOf(item)}`,
    loading: "lazy",
    className: "thumb",
  });
  img.addEventListener("error", () => img.classList.add("broken"));
  return img;
}

function renderResults(list, hits) {
  list.replaceChildren(
    ...hits.map((h) => {
      const product = h.productName ?? h.productCode;
      const thumb = thumbnailOf(h, product);
      const actions = el("div", { className: "actions" });
      if (h.imageId)
        actions.append(
          el("button", {
            type: "button",
            text: "Find similar",
            "aria-label": `Find images similar to result ${h.rank}`,
            onclick: () => searchByGalleryImage(h.imageId, `result ${h.rank} (${product}, ${labelOf(h)})`),
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

/** Results by defect type: one row per group, with its share of the vote. */
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
 */
function offerConfirm(suggestion) {
  const form = $("confirm-form");
  form.hidden = !suggestion || !query.file || query.searchedGalleryImage;
  setStatus($("confirm-status"), "");
  if (form.hidden) return;
  $("confirm-product").value = suggestion.productCode;
  $("confirm-defect").value = suggestion.defectCode ?? "normal";
}

async function confirmIntoGallery(e) {
  e.preventDefault();
  const status = $("confirm-status");
  const button = $("confirm-button");
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    setStatus(status, "Adding to the gallery needs the admin token (Admin page).", "error");
    return;
  }
  button.disabled = true;
  setStatus(status, "Adding...", "busy");
  try {
    const defect = $("confirm-defect").value.trim();
    const { addGalleryImages: r } = await gqlUpload(
      `mutation Add($images: [GalleryImageInput!]!) { addGalleryImages(images: $images) {
        added { imageId productCode defectCode } refused { code message }
        nearDuplicates { neighbourImageId similarity } } }`,
      {
        images: [
          {
            file: null,
            productCode: $("confirm-product").value.trim(),
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

function searchByGalleryImage(imageId, describe) {
  if (location.hash !== "#search") location.hash = "#search";
  $("search-query-note").textContent =
    `Query: gallery image ${imageId} (${describe}); it is left out of its own results.`;
  query.searchedGalleryImage = true;
  return runSearch(describe, () =>
    gql(SEARCH, { input: { ...searchOptions(), image: { galleryImageId: String(imageId) } } }),
  );
}

function setupSearch() {
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
}

// ---------------------------------------------------------------- gallery browser

const gallery = { cursor: null };

async function loadGallery(reset) {
  const grid = $("gallery-grid");
  const status = $("gallery-status");
  if (reset) {
    grid.replaceChildren();
    gallery.cursor = null;
  }
  const filter = {};
  if ($("gallery-product").value) filter.productCode = $("gallery-product").value;
  if ($("gallery-defect").value) filter.defectCode = $("gallery-defect").value;
  setStatus(status, "Loading...", "busy");
  try {
    const { galleryImages: page } = await gql(
      `query Gallery($filter: GalleryFilter, $after: ID) {
        galleryImages(filter: $filter, first: 24, after: $after) {
          total nextCursor images { imageId productCode productName defectCode defectName thumbnailUrl downloadUrl }
        }
      }`,
      { filter, after: gallery.cursor },
    );
    for (const img of page.images) {
      const product = img.productName ?? img.productCode;
      const thumb = thumbnailOf(img, product);
      grid.append(
        el(
          "li",
          { className: "card" },
          thumb,
          el("div", { className: "label product", text: product }),
          el("div", { className: `label defect ${img.defectCode ? "" : "normal"}`, text: labelOf(img) }),
          el(
            "div",
            { className: "actions" },
            el("button", {
              type: "button",
              text: "Find similar",
              "aria-label": `Find images similar to gallery image ${img.imageId}`,
              onclick: () => {
                // A search of both types stays one; otherwise the image's own type.
                if ($("image-type").value !== "ALL")
                  $("image-type").value = img.defectCode ? "DEFECT" : "NORMAL";
                searchByGalleryImage(img.imageId, `${product}, ${labelOf(img)}`);
              },
            }),
            el("button", {
              type: "button",
              text: "Remove",
              "aria-label": `Remove gallery image ${img.imageId}`,
              onclick: async (e) => {
                if (await removeImage(img.imageId, status)) e.target.closest("li")?.remove();
              },
            }),
          ),
        ),
      );
    }
    gallery.cursor = page.nextCursor;
    $("gallery-more").hidden = page.nextCursor === null;
    setStatus(status, `Showing ${grid.childElementCount} of ${page.total} images.`, "ok");
  } catch (e) {
    setStatus(status, describeError(e), "error");
  }
}

/** Removes a gallery image (admin); searches stop returning it at once. */
async function removeImage(imageId, status) {
  if (!confirm(`Remove gallery image ${imageId}? Its original and thumbnail are deleted.`)) return false;
  try {
    await gql(
      "mutation Remove($id: ID!) { removeGalleryImage(imageId: $id) }",
      { id: imageId },
      { admin: true },
    );
    setStatus(status, `Image ${imageId} removed.`, "ok");
    return true;
  } catch (e) {
    setStatus(status, describeError(e), "error");
    return false;
  }
}

async function loadDuplicates() {
  const status = $("duplicates-status");
  const node = $("duplicate-groups");
  try {
    const { nearDuplicates: groups } = await gql(`{ nearDuplicates(first: 20) { similarity
      images { imageId productCode productName defectCode defectName thumbnailUrl } } }`);
    setStatus(
      status,
      groups.length === 0 ? "No near-duplicates to review." : `${groups.length} groups to review.`,
      "ok",
    );
    node.replaceChildren(
      ...groups.map((g) => {
        const list = el("ul", { className: "grid" });
        for (const img of g.images) {
          const product = img.productName ?? img.productCode;
          list.append(
            el(
              "li",
              { className: "card", "data-image-id": img.imageId },
              thumbnailOf(img, product),
              el("div", { className: "label product", text: `#${img.imageId} ${product}` }),
              el("div", { className: `label defect ${img.defectCode ? "" : "normal"}`, text: labelOf(img) }),
              el(
                "div",
                { className: "actions" },
                el("button", {
                  type: "button",
                  text: "Keep",
                  "aria-label": `Keep image ${img.imageId}`,
                  onclick: async () => {
                    try {
                      await gql(
                        "mutation Keep($id: ID!) { keepNearDuplicate(imageId: $id) }",
                        { id: img.imageId },
                        { admin: true },
                      );
                      await loadDuplicates();
                    } catch (e) {
                      setStatus(status, describeError(e), "error");
                    }
                  },
                }),
                el("button", {
                  type: "button",
                  text: "Remove",
                  "aria-label": `Remove image ${img.imageId}`,
                  onclick: async () => {
                    if (await removeImage(img.imageId, status)) await loadDuplicates();
                  },
                }),
              ),
            ),
          );
        }
        return el(
          "section",
          { className: "group" },
          el("h4", { text: `Similarity ${g.similarity.toFixed(3)}` }),
          list,
        );
      }),
    );
  } catch (e) {
    setStatus(status, describeError(e), "error");
  }
}

function setupGallery() {
  $("gallery-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadGallery(true);
  });
  $("gallery-more").addEventListener("click", () => loadGallery(false));
}

// ---------------------------------------------------------------- admin page

const STATUS = `{ status { activeVersion replicaId
  indexes { version imageType ready count modelId factory builtAt source recallAt10 indexVersion activeIndexVersion
    adaptedSpace { served reason typePrior } }
  replicas { id ready lastSeenAt served { version imageType indexVersion } }
  indexVersions { id version imageType count builtBy publishedAt deletedAt active } } }`;

/** First 12 hex digits of an index version id, as the metrics label them. */
const shortId = (id) => (id ? id.slice(0, 12) : "");

function showTokenState() {
  $("admin-token-state").textContent = sessionStorage.getItem(TOKEN_KEY)
    ? "Token kept for this browser tab only."
    : "No token: status is read-only.";
}

async function refreshStatus() {
  showTokenState();
  try {
    const { status } = await gql(STATUS, {}, { admin: true });
    $("active-version").textContent = status.activeVersion;
    for (const b of [$("switch-v1"), $("switch-v2")])
      b.setAttribute("aria-pressed", String(b.dataset.version === status.activeVersion));
    $("index-table").tBodies[0].replaceChildren(
      ...status.indexes.map((i) =>
        el(
          "tr",
          {},
          el("td", { text: i.version }),
          el("td", { text: i.imageType.toLowerCase() }),
          el("td", { text: i.ready ? "yes" : "no" }),
          el("td", { text: String(i.count) }),
          el("td", { text: i.modelId ?? "" }),
          el("td", { text: i.factory ?? "" }),
          el("td", { text: i.builtAt ? new Date(i.builtAt).toLocaleString() : "" }),
          el("td", { text: i.source ? i.source.toLowerCase() : "" }),
          el("td", { text: i.recallAt10 === null ? "exact" : i.recallAt10.toFixed(3) }),
          el("td", {
            text:
              (i.adaptedSpace.served === "ADAPTED" ? "adapted" : "raw") +
              (i.adaptedSpace.typePrior?.startsWith("cross-validation raises") ? " + type prior" : ""),
            title: [i.adaptedSpace.reason, i.adaptedSpace.typePrior].filter(Boolean).join("\n"),
          }),
          el("td", { text: shortId(i.indexVersion), title: i.indexVersion ?? "" }),
          el("td", { text: shortId(i.activeIndexVersion), title: i.activeIndexVersion ?? "" }),
        ),
      ),
    );
    $("replica-id").textContent = status.replicaId;
    $("replica-table").tBodies[0].replaceChildren(
      ...status.replicas.map((r) =>
        el(
          "tr",
          {},
          el("td", { text: r.id }),
          el("td", { text: r.ready ? "yes" : "no" }),
          el("td", {
            text: r.served
              .map(
                (s) => `${s.version.toLowerCase()}/${s.imageType.toLowerCase()} ${shortId(s.indexVersion)}`,
              )
              .join(", "),
          }),
          el("td", { text: new Date(r.lastSeenAt).toLocaleTimeString() }),
        ),
      ),
    );
    $("version-table").tBodies[0].replaceChildren(
      ...status.indexVersions.map((v) => {
        const activate = el("button", { type: "button", text: "Activate" });
        activate.disabled = v.active || v.deletedAt !== null;
        activate.addEventListener("click", () => void activateVersion(v.id));
        return el(
          "tr",
          {},
          el("td", { text: shortId(v.id), title: v.id }),
          el("td", { text: `${v.version.toLowerCase()}/${v.imageType.toLowerCase()}` }),
          el("td", { text: String(v.count) }),
          el("td", { text: v.builtBy }),
          el("td", { text: new Date(v.publishedAt).toLocaleString() }),
          el("td", { text: v.active ? "active" : v.deletedAt ? "deleted" : "kept" }),
          el("td", {}, activate),
        );
      }),
    );
    setStatus($("admin-status"), `Updated ${new Date().toLocaleTimeString()}.`, "ok");
  } catch (e) {
    setStatus($("admin-status"), describeError(e), "error");
  }
}

async function pollRebuild(id) {
  const area = $("rebuild-progress-area");
  const bar = $("rebuild-progress");
  const state = $("rebuild-state");
  area.hidden = false;
  for (;;) {
    const { rebuildTask: t } = await gql(
      `query Task($id: ID!) { rebuildTask(id: $id) { status error durationMs
        progress { total processed newlyEmbedded failed } current { version imageType } } }`,
      { id },
      { admin: true },
    );
    if (!t) throw new ApiError(`Rebuild task ${id} is no longer known.`, "NOT_FOUND");
    const { total, processed, newlyEmbedded, failed } = t.progress;
    bar.max = Math.max(total, 1);
    bar.value = t.status === "SUCCEEDED" ? bar.max : processed;
    const where = t.current ? ` (${t.current.version} ${t.current.imageType.toLowerCase()})` : "";
    if (t.status === "RUNNING" || t.status === "QUEUED") {
      setStatus(
        state,
        t.status === "QUEUED"
          ? "Queued: waiting for a replica to take the rebuild."
          : `Rebuilding${where}: ${processed} of ${total} images, ${newlyEmbedded} newly embedded.`,
        "busy",
      );
      await new Promise((r) => setTimeout(r, 400));
      continue;
    }
    if (t.status === "SUCCEEDED")
      setStatus(
        state,
        `Done: ${total} images in ${((t.durationMs ?? 0) / 1000).toFixed(1)} s, ${failed} failed.`,
        "ok",
      );
    else setStatus(state, `Failed: ${t.error}`, "error");
    return;
  }
}

/** Makes an index version the active one for every replica (rollback or forward). */
async function activateVersion(id) {
  try {
    await gql(
      `mutation Activate($id: ID!) { activateIndexVersion(id: $id, reason: "activated on the admin page") { id } }`,
      { id },
      { admin: true },
    );
    await refreshStatus();
    setStatus($("admin-status"), `Index version ${shortId(id)} is active; replicas swap it in.`, "ok");
  } catch (err) {
    setStatus($("admin-status"), describeError(err), "error");
  }
}

function setupAdmin() {
  $("admin-login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("admin-token").value);
    $("admin-token").value = "";
    refreshStatus();
  });
  $("admin-logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    refreshStatus();
  });
  for (const b of [$("switch-v1"), $("switch-v2")]) {
    b.addEventListener("click", async () => {
      try {
        await gql(
          `mutation Switch($v: MatcherVersion!, $reason: String) {
            setMatcherVersion(version: $v, reason: $reason) { activeVersion } }`,
          { v: b.dataset.version, reason: $("switch-reason").value || null },
          { admin: true },
        );
        await refreshStatus();
        setStatus($("admin-status"), `Active matcher is now ${b.dataset.version}.`, "ok");
      } catch (err) {
        setStatus($("admin-status"), describeError(err), "error");
      }
    });
  }
  $("rebuild-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = $("rebuild-button");
    button.disabled = true;
    try {
      const version = $("rebuild-version").value || null;
      const { rebuildIndex: t } = await gql(
        `mutation Rebuild($t: ImageTypeSelector!, $v: MatcherVersion) { rebuildIndex(imageType: $t, version: $v) { id } }`,
        { t: $("rebuild-type").value, v: version },
        { admin: true },
      );
      await pollRebuild(t.id);
      await refreshStatus();
    } catch (err) {
      $("rebuild-progress-area").hidden = false;
      setStatus($("rebuild-state"), describeError(err), "error");
    } finally {
      button.disabled = false;
    }
  });
  $("compare-form").addEventListener("submit", compareMatchers);
}

/** One query image through V1 and V2: both lists, and whether they agree (the migration check). */
async function compareMatchers(e) {
  e.preventDefault();
  const file = $("compare-file").files?.[0];
  const status = $("compare-status");
  if (!file) return;
  const topK = Number($("compare-top-k").value) || 5;
  setStatus(status, "Searching with V1 and V2...", "busy");
  try {
    // One search per request (MAX_SEARCHES_PER_OPERATION), so two requests.
    const [v1, v2] = await Promise.all(
      ["V1", "V2"].map((version) =>
        gqlUpload(
          SEARCH,
          { input: { image: { file: null }, topK, version } },
          file,
          "variables.input.image.file",
        ),
      ),
    );
    const a = v1.searchSimilar.hits;
    const b = v2.searchSimilar.hits;
    // V1 file names write codes' "_" as "-" (the old parser splits on "_"), so codes are compared with both
    // spellings folded together.
    const key = (h) => `${h.productCode}/${h.defectCode ?? "normal"}`.replaceAll("-", "_");
    const render = (list, hits, other) =>
      list.replaceChildren(
        ...hits.map((h, i) =>
          el(
            "li",
            { className: other[i] && key(other[i]) === key(h) ? "agree" : "differ" },
            el("span", { text: `${key(h)} ` }),
            el("span", { className: "score", text: h.score.toFixed(3) }),
            el("span", { className: "file", text: ` ${h.filePath ?? ""}` }),
          ),
        ),
      );
    render($("compare-v1"), a, b);
    render($("compare-v2"), b, a);
    $("compare-result").hidden = false;
    const same = a.filter((h, i) => b[i] && key(b[i]) === key(h)).length;
    const top1 = a[0] && b[0] && key(a[0]) === key(b[0]);
    const sameImages = a.filter(
      (h) => h.contentSha256 && b.some((x) => x.contentSha256 === h.contentSha256),
    ).length;
    setStatus(
      status,
      `${top1 ? "Agree" : "Disagree"} at rank 1. Same labels at ${same} of ${Math.max(a.length, b.length)} ranks; ${sameImages} images in both lists.`,
      top1 ? "ok" : "error",
    );
  } catch (err) {
    $("compare-result").hidden = true;
    setStatus(status, describeError(err), "error");
  }
}

// ---------------------------------------------------------------- start

async function start() {
  // GraphiQL is off in production; hide the link when the page is not there.
  fetch("/graphiql", { method: "HEAD" })
    .then((r) => {
      $("graphiql-link").hidden = !r.ok;
    })
    .catch(() => {
      $("graphiql-link").hidden = true;
    });
  setupQueryInput();
  setupCrop();
  setupSearch();
  $("confirm-form").addEventListener("submit", confirmIntoGallery);
  setupGallery();
  setupAdmin();
  showView(location.hash.slice(1));
  await loadLabels();
  document.body.dataset.ready = "true";
}

start();
