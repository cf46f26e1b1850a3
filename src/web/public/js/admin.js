// @ts-check
// Admin page: the admin token (session storage only), status of indexes, replicas and index versions,
// the V1/V2 switch, a rebuild with its progress, one query image compared through V1 and V2, and the
// embedding models (js/models.js).

import { refreshModels, setupModels } from "./models.js";
import { SEARCH } from "./search.js";
import {
  $,
  $button,
  $input,
  $select,
  $table,
  ApiError,
  adminToken,
  describeError,
  el,
  gql,
  gqlUpload,
  setStatus,
  TOKEN_KEY,
} from "./shared.js";

/** @typedef {import("./types.js").ServiceStatus} ServiceStatus */
/** @typedef {import("./types.js").RebuildTask} RebuildTask */
/** @typedef {import("./types.js").SearchHit} SearchHit */
/** @typedef {import("./types.js").SearchResult} SearchResult */

const STATUS = `{ status { activeVersion replicaId
  indexes { version imageType ready count modelId factory builtAt source recallAt10 indexVersion activeIndexVersion
    adaptedSpace { served reason typePrior } }
  replicas { id ready lastSeenAt served { version imageType indexVersion } }
  indexVersions { id version imageType count builtBy publishedAt deletedAt active } } }`;

/** First 12 hex digits of an index version id, as the metrics label them. @param {string | null} id */
const shortId = (id) => (id ? id.slice(0, 12) : "");

function showTokenState() {
  $("admin-token-state").textContent = adminToken()
    ? "Token kept for this browser tab only."
    : "No token: status is read-only.";
}

/** Reads the service status again and fills the admin tables. */
export async function refreshStatus() {
  showTokenState();
  try {
    /** @type {{ status: ServiceStatus }} */
    const { status } = await gql(STATUS, {}, { admin: true });
    $("active-version").textContent = status.activeVersion;
    for (const b of [$("switch-v1"), $("switch-v2")])
      b.setAttribute("aria-pressed", String(b.dataset.version === status.activeVersion));
    $table("index-table").tBodies[0]?.replaceChildren(
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
    $table("replica-table").tBodies[0]?.replaceChildren(
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
    $table("version-table").tBodies[0]?.replaceChildren(
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

/** Reads the whole Admin page again: status tables and models. */
export function refreshAdmin() {
  void refreshStatus();
  void refreshModels();
}

/** Follows a rebuild task to its end, with a progress bar. @param {string} id */
async function pollRebuild(id) {
  const area = $("rebuild-progress-area");
  const bar = $("rebuild-progress", HTMLProgressElement);
  const state = $("rebuild-state");
  area.hidden = false;
  for (;;) {
    /** @type {{ rebuildTask: RebuildTask | null }} */
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

/** Makes an index version the active one for every replica (rollback or forward). @param {string} id */
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

/**
 * One query image through V1 and V2: both lists, and whether they agree (the migration check).
 * @param {SubmitEvent} e
 */
async function compareMatchers(e) {
  e.preventDefault();
  const file = $input("compare-file").files?.[0];
  const status = $("compare-status");
  if (!file) return;
  const topK = Number($input("compare-top-k").value) || 5;
  setStatus(status, "Searching with V1 and V2...", "busy");
  try {
    // One search per request (MAX_SEARCHES_PER_OPERATION), so two requests.
    /** @type {{ searchSimilar: SearchResult }[]} */
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
    const a = v1?.searchSimilar.hits ?? [];
    const b = v2?.searchSimilar.hits ?? [];
    // V1 file names write codes' "_" as "-" (the old parser splits on "_"), so codes are compared with both
    // spellings folded together.
    /** @param {SearchHit} h */
    const key = (h) => `${h.productCode}/${h.defectCode ?? "normal"}`.replaceAll("-", "_");
    /** @param {HTMLElement} list @param {SearchHit[]} hits @param {SearchHit[]} other */
    const render = (list, hits, other) =>
      list.replaceChildren(
        ...hits.map((h, i) => {
          const o = other[i];
          return el(
            "li",
            { className: o && key(o) === key(h) ? "agree" : "differ" },
            el("span", { text: `${key(h)} ` }),
            el("span", { className: "score", text: h.score.toFixed(3) }),
            el("span", { className: "file", text: ` ${h.filePath ?? ""}` }),
          );
        }),
      );
    render($("compare-v1"), a, b);
    render($("compare-v2"), b, a);
    $("compare-result").hidden = false;
    const same = a.filter((h, i) => {
      const o = b[i];
      return o && key(o) === key(h);
    }).length;
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

/** Wires the Admin page: token form, V1/V2 switch, rebuild, V1/V2 comparison, models. */
export function setupAdmin() {
  $("admin-login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $input("admin-token").value);
    $input("admin-token").value = "";
    refreshAdmin();
  });
  $("admin-logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    refreshAdmin();
  });
  for (const b of [$("switch-v1"), $("switch-v2")]) {
    b.addEventListener("click", async () => {
      try {
        await gql(
          `mutation Switch($v: MatcherVersion!, $reason: String) {
            setMatcherVersion(version: $v, reason: $reason) { activeVersion } }`,
          { v: b.dataset.version, reason: $input("switch-reason").value || null },
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
    const button = $button("rebuild-button");
    button.disabled = true;
    try {
      const version = $select("rebuild-version").value || null;
      /** @type {{ rebuildIndex: { id: string } }} */
      const { rebuildIndex: t } = await gql(
        `mutation Rebuild($t: ImageTypeSelector!, $v: MatcherVersion) { rebuildIndex(imageType: $t, version: $v) { id } }`,
        { t: $select("rebuild-type").value, v: version },
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
  // A promotion or rollback changes the indexes' model.
  setupModels({ onSwitch: refreshStatus });
}
