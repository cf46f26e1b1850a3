// @ts-check
// Gallery page: images by product and defect type, a page at a time, and the near-duplicates to review
// (keep both, or remove one).

import { searchByGalleryImage } from "./search.js";
import {
  $,
  $select,
  describeError,
  el,
  gql,
  keepButton,
  labelOf,
  removeButton,
  setStatus,
  thumbnailOf,
} from "./shared.js";

/** @typedef {import("./types.js").GalleryImage} GalleryImage */

/** Where the next page starts; null: from the first. @type {{ cursor: string | null }} */
const gallery = { cursor: null };

/**
 * Shows the next page of gallery images for the filter of the form.
 * @param {boolean} reset - start again from the first page
 */
export async function loadGallery(reset) {
  const grid = $("gallery-grid");
  const status = $("gallery-status");
  if (reset) {
    grid.replaceChildren();
    gallery.cursor = null;
  }
  /** @type {{ productCode?: string, defectCode?: string }} */
  const filter = {};
  if ($select("gallery-product").value) filter.productCode = $select("gallery-product").value;
  if ($select("gallery-defect").value) filter.defectCode = $select("gallery-defect").value;
  setStatus(status, "Loading...", "busy");
  try {
    /** @type {{ galleryImages: { total: number, nextCursor: string | null, images: GalleryImage[] } }} */
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
                const imageType = $select("image-type");
                if (imageType.value !== "ALL") imageType.value = img.defectCode ? "DEFECT" : "NORMAL";
                searchByGalleryImage(img.imageId, `${product}, ${labelOf(img)}`);
              },
            }),
            removeButton(img.imageId, `Remove gallery image ${img.imageId}`, status, (button) =>
              button.closest("li")?.remove(),
            ),
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

/** Shows the near-duplicate groups to review, each with Keep and Remove per image. */
export async function loadDuplicates() {
  const status = $("duplicates-status");
  const node = $("duplicate-groups");
  try {
    /** @type {{ nearDuplicates: { similarity: number, images: GalleryImage[] }[] }} */
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
                keepButton(img.imageId, status, loadDuplicates),
                removeButton(img.imageId, `Remove image ${img.imageId}`, status, loadDuplicates),
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

/** Wires the Gallery page's filter form and its Load more button. */
export function setupGallery() {
  $("gallery-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadGallery(true);
  });
  $("gallery-more").addEventListener("click", () => loadGallery(false));
}
