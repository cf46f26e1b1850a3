// @ts-check
// Admin page, Models section: the registered embedding models (active, candidates with their preparation,
// retired), registering a candidate, promote / rollback / retire, and the active model and a candidate
// compared side by side (labelled gallery and shadow traffic). Every call here needs the admin token.

import {
  $,
  $button,
  $input,
  $select,
  $table,
  adminToken,
  describeError,
  el,
  gql,
  setStatus,
} from "./shared.js";

/** @typedef {import("./types.js").EmbeddingModel} EmbeddingModel */
/** @typedef {import("./types.js").ModelComparison} ModelComparison */
/** @typedef {import("./types.js").ModelQuality} ModelQuality */
/** @typedef {import("./types.js").ModelSwitch} ModelSwitch */

const MODEL_FIELDS = `modelId state preset dimension embedded galleryImages loaded problem promotable
  notPromotableReason registeredAt retiredAt
  preparation { id status error progress { total processed newlyEmbedded failed } }`;
const MODELS = `{ models { ${MODEL_FIELDS} } }`;
const QUALITY = `modelId queries p10 suggestionAccuracy cvRawP10 cvAdaptedP10 servedSpace
  perClass { label queries p10 suggestionAccuracy }`;
const COMPARE = `query CompareModels($id: String) { compareModels(candidateModelId: $id) {
  active { ${QUALITY} } candidate { ${QUALITY} }
  shadow { queries overlapAt10 top1Agreement suggestionAgreement candidateP50Ms activeP50Ms } } }`;

/** While a preparation runs, the table is read again this often (ms). */
const POLL_MS = 3000;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let pollTimer;

/** After a promotion or rollback: the rest of the admin page reads the status again. */
let onSwitch = () => {};

/** `0.873`, or `-` for none. @param {number | null | undefined} v */
const num = (v) => (typeof v === "number" ? v.toFixed(3) : "-");
/** `12.3 ms`, or `-`. @param {number | null | undefined} v */
const ms = (v) => (typeof v === "number" ? `${v.toFixed(1)} ms` : "-");

/** @param {EmbeddingModel} m */
const preparing = (m) => m.preparation?.status === "RUNNING" || m.preparation?.status === "QUEUED";

/** The preparation cell: status, progress bar and counts, or the failure. @param {EmbeddingModel} m */
function preparationCell(m) {
  const p = m.preparation;
  if (!p) return el("td", { text: m.state === "ACTIVE" ? "" : "none" });
  const { total, processed, newlyEmbedded, failed } = p.progress;
  const bar = el("progress", { "aria-label": `Preparation of ${m.modelId}` });
  bar.max = Math.max(total, 1);
  bar.value = p.status === "SUCCEEDED" ? bar.max : processed;
  const text =
    p.status === "FAILED"
      ? `failed: ${p.error ?? "no reason given"}`
      : `${p.status.toLowerCase()}: ${processed} of ${total}, ${newlyEmbedded} newly embedded${failed ? `, ${failed} failed` : ""}`;
  return el("td", { className: "preparation", "data-status": p.status }, bar, el("div", { text }));
}

/** Whether promoteModel would take it, or why not. @param {EmbeddingModel} m */
function promotableText(m) {
  if (m.state === "ACTIVE") return "active";
  if (m.state === "RETIRED") return "retired";
  return m.promotable ? "yes" : `no: ${m.notPromotableReason ?? "not ready"}`;
}

/** @param {EmbeddingModel} m */
function modelRow(m) {
  const actions = el("div", { className: "actions" });
  if (m.state === "CANDIDATE") {
    const promote = el("button", {
      type: "button",
      text: "Promote",
      "aria-label": `Promote ${m.modelId}`,
      title: m.promotable ? "" : (m.notPromotableReason ?? ""),
    });
    promote.disabled = !m.promotable;
    promote.addEventListener("click", () => void promoteCandidate(m.modelId));
    const compare = el("button", { type: "button", text: "Compare", "aria-label": `Compare ${m.modelId}` });
    compare.disabled = !m.loaded;
    compare.addEventListener("click", () => void compareModels(m.modelId));
    const retire = el("button", { type: "button", text: "Retire", "aria-label": `Retire ${m.modelId}` });
    retire.addEventListener("click", () => void retireCandidate(m.modelId));
    actions.append(compare, promote, retire);
  }
  return el(
    "tr",
    { "data-model-id": m.modelId, "data-state": m.state },
    el("td", { className: "state", text: m.state }),
    el("td", { className: "model-id", text: m.modelId, title: m.problem ?? "" }),
    el("td", { text: String(m.dimension) }),
    el("td", { text: `${m.embedded} / ${m.galleryImages}` }),
    preparationCell(m),
    el("td", {
      className: "promotable",
      text: promotableText(m) + (m.problem ? ` (not loaded here: ${m.problem})` : ""),
    }),
    el("td", {}, actions),
  );
}

/** Reads the models again and fills the table; while a preparation runs, again in {@link POLL_MS}. */
export async function refreshModels() {
  clearTimeout(pollTimer);
  const status = $("models-status");
  const body = $table("model-table").tBodies[0];
  if (!adminToken()) {
    body?.replaceChildren();
    setStatus(status, "Enter the admin token to see the models.");
    return;
  }
  try {
    /** @type {{ models: EmbeddingModel[] }} */
    const { models } = await gql(MODELS, {}, { admin: true });
    body?.replaceChildren(...models.map(modelRow));
    const running = models.filter(preparing);
    setStatus(
      status,
      running.length
        ? `Preparing ${running.map((m) => m.modelId).join(", ")}; updated ${new Date().toLocaleTimeString()}.`
        : `Updated ${new Date().toLocaleTimeString()}.`,
      running.length ? "busy" : "ok",
    );
    // Only while the admin page is shown: a hidden tab of the page stops asking.
    if (running.length && !$("view-admin").hidden) pollTimer = setTimeout(refreshModels, POLL_MS);
  } catch (e) {
    setStatus(status, describeError(e), "error");
  }
}

/** The reason field's text, or null. */
const reason = () => $input("model-reason").value.trim() || null;

/**
 * Runs a model mutation, says what it did (or its error), and reads the models again.
 * @param {string} query
 * @param {Record<string, unknown>} variables
 * @param {(data: any) => string} done - what to say on success
 * @param {boolean} [switched] - the active model changed: the status tables too
 */
async function mutate(query, variables, done, switched = false) {
  const status = $("models-status");
  setStatus(status, "Working...", "busy");
  try {
    const data = await gql(query, variables, { admin: true });
    await refreshModels();
    setStatus(status, done(data), "ok");
    if (switched) onSwitch();
  } catch (e) {
    setStatus(status, describeError(e), "error");
  }
}

/** @param {ModelSwitch} s */
const switchText = (s) =>
  `${s.modelId} is active (was ${s.previousModelId ?? "none"}); answering in ${s.tookMs.toFixed(0)} ms.`;

/** @param {string} modelId */
async function promoteCandidate(modelId) {
  if (
    !confirm(
      `Promote ${modelId}? Every search switches to it at once; the current model is kept for a rollback.`,
    )
  )
    return;
  await mutate(
    "mutation Promote($id: String!, $reason: String) { promoteModel(modelId: $id, reason: $reason) { modelId previousModelId tookMs } }",
    { id: modelId, reason: reason() },
    (d) => switchText(d.promoteModel),
    true,
  );
}

async function rollback() {
  if (!confirm("Roll back to the previous model? Every search switches back at once.")) return;
  await mutate(
    "mutation Rollback($reason: String) { rollbackModel(reason: $reason) { modelId previousModelId tookMs } }",
    { reason: reason() },
    (d) => switchText(d.rollbackModel),
    true,
  );
}

/** @param {string} modelId */
async function retireCandidate(modelId) {
  if (
    !confirm(
      `Retire ${modelId}? Its embeddings and indexes are deleted; registering it again re-embeds the gallery.`,
    )
  )
    return;
  await mutate(
    "mutation Retire($id: String!) { retireModel(modelId: $id) }",
    { id: modelId },
    () => `${modelId} retired.`,
  );
}

/** @param {SubmitEvent} e */
async function register(e) {
  e.preventDefault();
  const button = $button("register-model-button");
  /** @type {{ preset: string, resizeMode?: string, path?: string, sha256?: string }} */
  const input = { preset: $select("model-preset").value };
  const resizeMode = $select("model-resize").value;
  if (resizeMode) input.resizeMode = resizeMode;
  const path = $input("model-path").value.trim();
  const sha256 = $input("model-sha256").value.trim();
  if (path) input.path = path;
  if (sha256) input.sha256 = sha256;
  button.disabled = true;
  try {
    await mutate(
      `mutation Register($input: RegisterModelInput!) { registerModel(input: $input) {
        model { modelId } preparation { id status } } }`,
      { input },
      (d) =>
        d.registerModel.preparation
          ? `${d.registerModel.model.modelId} registered; its preparation is ${d.registerModel.preparation.status.toLowerCase()}.`
          : `${d.registerModel.model.modelId} registered; its preparation starts when the open rebuild ends.`,
    );
  } finally {
    button.disabled = false;
  }
}

/** A row of the comparison: a measure, the active model's value, the candidate's. @param {string} label @param {string} a @param {string} b */
const compareRow = (label, a, b) =>
  el("tr", {}, el("th", { scope: "row", text: label }), el("td", { text: a }), el("td", { text: b }));

/** The active model and `candidateModelId` side by side. @param {string} candidateModelId */
async function compareModels(candidateModelId) {
  const status = $("model-compare-status");
  const area = $("model-compare");
  setStatus(status, `Comparing the active model with ${candidateModelId} on the labelled gallery...`, "busy");
  try {
    /** @type {{ compareModels: ModelComparison }} */
    const { compareModels: c } = await gql(COMPARE, { id: candidateModelId }, { admin: true });
    const { active: a, candidate: b, shadow: s } = c;
    /** @param {ModelQuality} q */
    const cv = (q) => `${num(q.cvRawP10)} raw / ${num(q.cvAdaptedP10)} adapted`;
    $("model-compare-active").textContent = a.modelId;
    $("model-compare-candidate").textContent = b.modelId;
    const byLabel = new Map(b.perClass.map((p) => [p.label, p]));
    const labels = [...new Set([...a.perClass.map((p) => p.label), ...byLabel.keys()])];
    const aByLabel = new Map(a.perClass.map((p) => [p.label, p]));
    $table("model-compare-table").tBodies[0]?.replaceChildren(
      compareRow("Queries", String(a.queries), String(b.queries)),
      compareRow("P@10", num(a.p10), num(b.p10)),
      compareRow("Suggestion accuracy", num(a.suggestionAccuracy), num(b.suggestionAccuracy)),
      compareRow("Gate CV P@10", cv(a), cv(b)),
      compareRow("Space served", a.servedSpace.toLowerCase(), b.servedSpace.toLowerCase()),
      ...labels.map((label) =>
        compareRow(`P@10 ${label}`, num(aByLabel.get(label)?.p10), num(byLabel.get(label)?.p10)),
      ),
    );
    $table("model-shadow-table").tBodies[0]?.replaceChildren(
      ...(s
        ? [
            ["Queries", String(s.queries)],
            ["Overlap@10", num(s.overlapAt10)],
            ["Top-1 agreement", num(s.top1Agreement)],
            ["Suggestion agreement", num(s.suggestionAgreement)],
            ["Candidate p50", ms(s.candidateP50Ms)],
            ["Active p50", ms(s.activeP50Ms)],
          ].map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { text: v })))
        : [
            el(
              "tr",
              {},
              el("td", { colspan: 2, text: "No live searches compared yet (MODEL_SHADOW_SHARE)." }),
            ),
          ]),
    );
    area.hidden = false;
    setStatus(status, `Compared on ${a.queries} labelled gallery images.`, "ok");
  } catch (e) {
    area.hidden = true;
    setStatus(status, describeError(e), "error");
  }
}

/**
 * Wires the Models section.
 * @param {{ onSwitch: () => unknown }} hooks - `onSwitch`: after a promotion or rollback
 */
export function setupModels(hooks) {
  onSwitch = () => void hooks.onSwitch();
  $("register-model-form").addEventListener("submit", register);
  $("model-rollback").addEventListener("click", () => void rollback());
}
