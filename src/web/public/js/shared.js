// @ts-check
// What every page of the web app uses: the GraphQL client (JSON and multipart), the admin token, DOM helpers,
// error wording, and the gallery edits (remove, keep) that more than one list offers.
// Every value from the API is put into the page with textContent or attributes, never as HTML.

const GRAPHQL = "/graphql";
/** Session storage key of the admin token (this tab only; never localStorage). */
export const TOKEN_KEY = "defect-lens.adminToken";

/** An error the API returned, with its stable extensions.code. */
export class ApiError extends Error {
  /**
   * @param {string} message
   * @param {string | undefined} code - extensions.code
   */
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

/** The admin token of this tab, or null. */
export const adminToken = () => sessionStorage.getItem(TOKEN_KEY);

/**
 * The element with this id; with `type`, checked to be one (so `.value` and friends are typed).
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{ new (): T }} [type]
 * @returns {T}
 */
export function $(id, type) {
  const node = document.getElementById(id);
  if (!node || (type && !(node instanceof type))) throw new Error(`The page has no #${id} of that kind.`);
  return /** @type {T} */ (node);
}

/** An `<input>` by id. @param {string} id */
export const $input = (id) => $(id, HTMLInputElement);
/** A `<select>` by id. @param {string} id */
export const $select = (id) => $(id, HTMLSelectElement);
/** A `<table>` by id. @param {string} id */
export const $table = (id) => $(id, HTMLTableElement);
/** A `<button>` by id. @param {string} id */
export const $button = (id) => $(id, HTMLButtonElement);

/**
 * @typedef {{ text?: string, className?: string } & Record<string, unknown>} ElProps
 *   `text` sets textContent, `className` the class, `on<event>` adds a listener, anything else an attribute
 *   (null and undefined are left out).
 */

/**
 * A new element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {ElProps} [props]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "className") node.className = String(v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else node.setAttribute(k, String(v));
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

/**
 * The data of a GraphQL answer, or its first error as an ApiError.
 * @param {Response} res
 * @returns {Promise<any>}
 */
async function readAnswer(res) {
  /** @type {{ data?: unknown, errors?: { message: string, extensions?: { code?: string } }[] }} */
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

/** @param {boolean} admin @returns {Record<string, string>} */
function adminHeaders(admin) {
  const token = adminToken();
  return admin && token ? { authorization: `Bearer ${token}` } : {};
}

/**
 * @typedef {object} GqlOptions
 * @property {boolean} [admin] - send the admin token (when there is one)
 */

/**
 * A GraphQL operation as JSON. The answer's `data` is not checked against the document: callers name its
 * shape with a JSDoc type.
 * @param {string} query
 * @param {Record<string, unknown>} [variables]
 * @param {GqlOptions} [options]
 * @returns {Promise<any>}
 */
export async function gql(query, variables = {}, { admin = false } = {}) {
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
 * @param {string} query
 * @param {Record<string, unknown>} variables
 * @param {Blob & { name?: string }} file
 * @param {string} filePath - where the file goes in the operation, e.g. `variables.input.image.file`
 * @param {GqlOptions} [options]
 * @returns {Promise<any>}
 */
export async function gqlUpload(query, variables, file, filePath, { admin = false } = {}) {
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

/** @type {Record<string, string>} */
const HINTS = {
  IMAGE_TOO_LARGE: "The image is too large.",
  IMAGE_TOO_SMALL: "The image is too small.",
  INVALID_IMAGE_FORMAT: "That file is not an image the service can read.",
  INDEX_NOT_READY: "The index is not ready yet.",
  OVERLOADED: "The service is busy.",
  UNAUTHENTICATED: "An admin token is needed.",
  FORBIDDEN: "The admin token was refused.",
};

/**
 * "Too large", "not an image", "index not ready": the API's own words, with what to do, and the code.
 * @param {unknown} e - an ApiError, or any other error (a failed fetch)
 */
export function describeError(e) {
  const { message, code } = /** @type {{ message?: string, code?: string }} */ (e ?? {});
  const lead = code && HINTS[code] ? `${HINTS[code]} ` : "";
  return `${lead}${message ?? String(e)}${code ? ` (${code})` : ""}`;
}

/** @typedef {"info" | "busy" | "ok" | "error"} StatusKind */

/**
 * A status line: its text, and `data-kind` for its colour (and for tests to wait on).
 * @param {HTMLElement} node
 * @param {string} text
 * @param {StatusKind} [kind]
 */
export function setStatus(node, text, kind = "info") {
  node.textContent = text;
  node.dataset.kind = kind;
}

/** @typedef {import("./types.js").ImageLabels} ImageLabels */

/** "Normal", or the defect type's name. @param {ImageLabels} item */
export function labelOf(item) {
  return item.defectCode ? (item.defectName ?? item.defectCode) : "Normal";
}

/**
 * A grid cell's picture: the presigned thumbnail, or a placeholder until the thumbnail exists.
 * @param {ImageLabels & { thumbnailUrl?: string | null }} item
 * @param {string} product - the product's name, for the alt text
 */
export function thumbnailOf(item, product) {
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

// ---------------------------------------------------------------- gallery edits (admin)

/**
 * Removes a gallery image (admin) after asking; searches stop returning it at once.
 * @param {string} imageId
 * @param {HTMLElement} status - where the outcome is said
 * @returns {Promise<boolean>} whether it was removed
 */
export async function removeImage(imageId, status) {
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

/**
 * Keeps an image reported as a near-duplicate (admin): its pairs leave the review list.
 * @param {string} imageId
 * @param {HTMLElement} status - where a failure is said
 * @returns {Promise<boolean>} whether it was kept
 */
export async function keepImage(imageId, status) {
  try {
    await gql(
      "mutation Keep($id: ID!) { keepNearDuplicate(imageId: $id) }",
      { id: imageId },
      { admin: true },
    );
    return true;
  } catch (e) {
    setStatus(status, describeError(e), "error");
    return false;
  }
}

/**
 * A card's Remove button: asks, removes, then `after` (drop the card, reload the list).
 * @param {string} imageId
 * @param {string} ariaLabel
 * @param {HTMLElement} status
 * @param {(button: HTMLButtonElement) => unknown} after
 */
export function removeButton(imageId, ariaLabel, status, after) {
  const button = el("button", { type: "button", text: "Remove", "aria-label": ariaLabel });
  button.addEventListener("click", async () => {
    if (await removeImage(imageId, status)) await after(button);
  });
  return button;
}

/**
 * A near-duplicate's Keep button: keeps it, then `after` (reload the review list).
 * @param {string} imageId
 * @param {HTMLElement} status
 * @param {() => unknown} after
 */
export function keepButton(imageId, status, after) {
  const button = el("button", { type: "button", text: "Keep", "aria-label": `Keep image ${imageId}` });
  button.addEventListener("click", async () => {
    if (await keepImage(imageId, status)) await after();
  });
  return button;
}
