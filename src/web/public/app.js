// @ts-check
// defect-lens web app: plain ES modules, no build step, talking to the service's own GraphQL API.
// This entry wires the pages (js/search.js, js/gallery.js, js/admin.js with js/models.js; js/shared.js is what they share),
// switches between them by the URL's hash, and fills the product and defect-type filters.

import { refreshAdmin, setupAdmin } from "./js/admin.js";
import { loadDuplicates, loadGallery, setupGallery } from "./js/gallery.js";
import { setupSearch } from "./js/search.js";
import { $, $select, describeError, el, gql, setStatus } from "./js/shared.js";

const VIEWS = ["search", "gallery", "admin"];

/** Shows one page (unknown names: Search) and loads what it needs. @param {string} name */
function showView(name) {
  const view = VIEWS.includes(name) ? name : "search";
  for (const s of document.querySelectorAll("[data-view]"))
    if (s instanceof HTMLElement) s.hidden = s.dataset.view !== view;
  for (const a of document.querySelectorAll("[data-view-link]")) {
    if (a instanceof HTMLElement && a.dataset.viewLink === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (view === "admin") refreshAdmin();
  if (view === "gallery" && !$("gallery-grid").hasChildNodes()) loadGallery(true);
  if (view === "gallery") loadDuplicates();
}

window.addEventListener("hashchange", () => showView(location.hash.slice(1)));

/** The filters' products and defect types, and the confirm form's suggestions, from the gallery. */
async function loadLabels() {
  try {
    /** @type {{ products: { productCode: string, productName: string, imageCount: number }[],
     *   defectTypes: { defectCode: string, defectName: string, imageCount: number }[] }} */
    const data = await gql(`{ products { productCode productName imageCount }
      defectTypes { defectCode defectName imageCount } }`);
    for (const select of [$select("product-filter"), $select("gallery-product")]) {
      for (const p of data.products)
        select.append(el("option", { value: p.productCode, text: `${p.productName} (${p.imageCount})` }));
    }
    for (const select of [$select("defect-filter"), $select("gallery-defect")]) {
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

async function start() {
  // GraphiQL is off in production; hide the link when the page is not there.
  fetch("/graphiql", { method: "HEAD" })
    .then((r) => {
      $("graphiql-link").hidden = !r.ok;
    })
    .catch(() => {
      $("graphiql-link").hidden = true;
    });
  setupSearch();
  setupGallery();
  setupAdmin();
  showView(location.hash.slice(1));
  await loadLabels();
  document.body.dataset.ready = "true";
}

start();
