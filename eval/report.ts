import { type MachineInfo, machineLine } from "../tools/shared/machine.js";
import { fmt } from "../tools/shared/stats.js";
import { againstMin, P10_TARGETS } from "../tools/shared/targets.js";
import type { DatasetEvaluation, MethodSummary } from "./evaluate.js";
import type { RetrievalMetrics } from "./metrics.js";

/** What a whole evaluation run produced (also the JSON file's shape). */
export interface EvaluationReport {
  date: string;
  command: string;
  machine: MachineInfo;
  preset: string;
  version: string;
  durationMs: number;
  datasets: DatasetEvaluation[];
}

const row = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
const header = (cells: readonly string[]) => [row(cells), row(cells.map(() => "---"))];

function figures(m: RetrievalMetrics, p10Target?: number): string[] {
  return [fmt(m.p1), fmt(m.p5), againstMin(m.p10, p10Target), fmt(m.r10), fmt(m.ap), fmt(m.top1DefectType)];
}

function summaryTable(evals: readonly DatasetEvaluation[]): string[] {
  const lines = header([
    "dataset",
    "method",
    "queries",
    "gallery",
    "P@1",
    "P@5",
    "P@10 (target)",
    "R@10",
    "mAP@topK",
    "mAP full",
    "top-1 defect type",
  ]);
  for (const e of evals) {
    const target = P10_TARGETS[e.dataset];
    const line = (name: string, s: MethodSummary, full: string, t?: number) =>
      row([
        e.dataset,
        name,
        String(e.queries),
        String(e.gallery),
        ...figures(s.overall, t).slice(0, 5),
        full,
        fmt(s.overall.top1DefectType),
      ]);
    lines.push(line("service", e.service, "—", target));
    lines.push(line("model direct, exact", e.direct, fmt(e.directFullMap)));
    lines.push(line("baseline 16x16 grey, exact", e.baseline, fmt(e.baselineFullMap)));
  }
  return lines;
}

function classTable(e: DatasetEvaluation): string[] {
  const lines = header([
    "class",
    "queries",
    "gallery",
    "P@1",
    "P@5",
    "P@10",
    "R@10",
    "mAP@topK",
    "top-1 type",
    "baseline P@1",
    "baseline P@10",
    "baseline mAP@topK",
  ]);
  e.service.perClass.forEach((c, i) => {
    const b = e.baseline.perClass[i]?.metrics;
    lines.push(
      row([
        c.label,
        String(c.queries),
        String(c.gallery),
        ...figures(c.metrics).map((x) => x.replace(/ \(.*/, "")),
        fmt(b?.p1),
        fmt(b?.p10),
        fmt(b?.ap),
      ]),
    );
  });
  return lines;
}

/** "texture, beta 0.2" from the gate's sentence when it chose a type prior; "none" otherwise. */
const priorChoice = (sentence: string | null) =>
  sentence?.startsWith("cross-validation raises") ? (sentence.match(/\(([^)]*)\)$/)?.[1] ?? "yes") : "none";

function techniquesTable(evals: readonly DatasetEvaluation[]): string[] {
  const lines = header([
    "dataset",
    "technique",
    "P@10 ALL, adapted (target)",
    "Δ vs default",
    "P@10 own type, adapted",
    "P@10 ALL, raw",
    "worst class Δ vs default (ALL, adapted)",
    "index stage p50 ms, own type / ALL",
    "search p50 ms",
    "ingest img/s",
    "type prior chosen",
  ]);
  for (const e of evals) {
    const base = e.spaces.adapted;
    lines.push(
      row([
        e.dataset,
        "default (none)",
        againstMin(base.service.overall.p10, P10_TARGETS[e.dataset]),
        "—",
        fmt(base.ownType.overall.p10),
        fmt(e.spaces.raw.service.overall.p10),
        "—",
        `${fmt(base.indexMs.p50, 2)} / ${fmt(base.allIndexMs.p50, 2)}`,
        fmt(base.searchMs.p50, 1),
        fmt(e.ingest.imagesPerSecond, 1),
        priorChoice(Object.values(e.adaptation).find((a) => a.typePrior)?.typePrior ?? null),
      ]),
    );
    for (const t of e.techniques) {
      const worst = Math.min(
        ...t.adaptedAll.perClass.map((c, i) => c.metrics.p10 - (base.service.perClass[i]?.metrics.p10 ?? 0)),
      );
      lines.push(
        row([
          e.dataset,
          t.name,
          againstMin(t.adaptedAll.overall.p10, P10_TARGETS[e.dataset]),
          fmt(t.adaptedAll.overall.p10 - base.service.overall.p10),
          fmt(t.adaptedOwnType.overall.p10),
          fmt(t.rawAll.overall.p10),
          fmt(worst),
          `${fmt(t.indexMs.p50, 2)} / ${fmt(t.allIndexMs.p50, 2)}`,
          fmt(t.searchMs.p50, 1),
          fmt(t.ingestImagesPerSecond, 1),
          priorChoice(t.typePrior),
        ]),
      );
    }
  }
  return lines;
}

function spacesTable(evals: readonly DatasetEvaluation[]): string[] {
  const lines = header([
    "dataset",
    "space",
    "P@1",
    "P@10 ALL (target)",
    "mAP@topK ALL",
    "P@10 own type",
    "suggestion acc. own type / ALL",
    "search p50 ms",
    "index stage p50 / p99 ms, own type / ALL",
    "added p50 ms vs raw, own type / ALL",
    "worst class Δ P@10 vs raw",
  ]);
  for (const e of evals) {
    const raw = e.spaces.raw.service;
    for (const space of ["raw", "adapted"] as const) {
      const s = e.spaces[space];
      const worst = Math.min(
        ...s.service.perClass.map((c, i) => c.metrics.p10 - (raw.perClass[i]?.metrics.p10 ?? 0)),
      );
      lines.push(
        row([
          e.dataset,
          space,
          fmt(s.service.overall.p1),
          againstMin(s.service.overall.p10, P10_TARGETS[e.dataset]),
          fmt(s.service.overall.ap),
          fmt(s.ownType.overall.p10),
          `${fmt(s.suggestionAccuracy.ownType)} / ${fmt(s.suggestionAccuracy.merged)}`,
          fmt(s.searchMs.p50, 1),
          `${fmt(s.indexMs.p50, 2)} / ${fmt(s.indexMs.p99, 2)}, ${fmt(s.allIndexMs.p50, 2)} / ${fmt(s.allIndexMs.p99, 2)}`,
          space === "raw"
            ? "—"
            : `${fmt(s.indexMs.p50 - e.spaces.raw.indexMs.p50, 2)} / ${fmt(s.allIndexMs.p50 - e.spaces.raw.allIndexMs.p50, 2)}`,
          space === "raw" ? "—" : fmt(worst),
        ]),
      );
    }
  }
  return lines;
}

function spaceClassTable(e: DatasetEvaluation): string[] {
  const lines = header(["class", "queries", "P@10 raw", "P@10 adapted", "Δ", "own-type P@10 raw / adapted"]);
  e.spaces.raw.service.perClass.forEach((c, i) => {
    const a = e.spaces.adapted.service.perClass[i]?.metrics.p10 ?? 0;
    const oa = e.spaces.adapted.ownType.perClass[i]?.metrics.p10 ?? 0;
    const or = e.spaces.raw.ownType.perClass[i]?.metrics.p10 ?? 0;
    lines.push(
      row([
        c.label,
        String(c.queries),
        fmt(c.metrics.p10),
        fmt(a),
        fmt(a - c.metrics.p10),
        `${fmt(or)} / ${fmt(oa)}`,
      ]),
    );
  });
  return lines;
}

/** The Markdown report: summary table with targets, service-vs-direct check, per-class tables. */
export function renderEvaluation(r: EvaluationReport): string {
  const out: string[] = [
    `## Retrieval quality — ${r.date}`,
    "",
    `- Command: \`${r.command}\``,
    `- Machine: ${machineLine(r.machine)}`,
    `- Model preset: ${r.preset} (${r.datasets[0]?.modelId ?? "?"}), matcher ${r.version}; run took ${(r.durationMs / 1000).toFixed(0)} s`,
    "- Service = gallery ingested with the real ingestion path, indexes built by the rebuild job, every query image",
    "  sent as base64 to the real search path. The `service` rows use the default space (SEARCH_DEFAULT_SPACE=adapted:",
    "  learned from the gallery's labels where cross-validation accepted it) and the service's `imageType: ALL` search",
    "  (both indexes in one ranking, with the type prior where cross-validation chose one). Raw rows merge the per-index",
    "  lists by score (what ALL does without a prior), so the service-vs-direct check below compares whole rankings.",
    `- Relevant = same product and defect type (\`good\` = normal). mAP@topK averages precision over the first topK ranks`,
    "  per index (topK = min(MAX_TOP_K 1000, index size)), dividing by all relevant gallery images, so it is a lower",
    "  bound of the full-ranking mAP; 'mAP full' ranks the whole gallery (exact search, direct path only).",
    "",
    ...summaryTable(r.datasets),
    "",
    "### Service vs the model used directly, and the split",
    "",
    ...header([
      "dataset",
      "service raw ≥ direct (P@10)",
      "top-10 identical",
      "max abs Δ overall",
      "own-type index P@10 (service raw / direct)",
      "ingest img/s",
      "search p50 / p99 ms (at topK)",
      "groups straddling",
      "queries in gallery",
      "gallery duplicates",
    ]),
    ...r.datasets.map((e) =>
      row([
        e.dataset,
        e.spaces.raw.service.overall.p10 + 1e-9 >= e.direct.overall.p10 ? "yes" : "**no**",
        `${(e.agreement.top10Identical * 100).toFixed(1)}%`,
        fmt(e.agreement.maxOverallDelta, 4),
        `${fmt(e.spaces.raw.ownType.overall.p10)} / ${fmt(e.ownType.direct.overall.p10)}`,
        fmt(e.ingest.imagesPerSecond, 1),
        `${fmt(e.searchMs.p50, 1)} / ${fmt(e.searchMs.p99, 1)}`,
        String(e.checks.groupsStraddling),
        String(e.checks.queriesInGallery),
        String(e.checks.galleryDuplicates),
      ]),
    ),
    "",
  ];
  out.push(
    "### Embedding spaces through the service (raw vs adapted)",
    "",
    "The adapted space is learned at rebuild time from the gallery's labels only and served where k-fold",
    "cross-validation on the gallery accepted it; elsewhere `adapted` searches fall back to raw. ALL = one search of",
    "both image types (adapted: with the type prior, when chosen); own type = a search of the query's own index.",
    "",
    ...spacesTable(r.datasets),
    "",
  );
  if (r.datasets.some((e) => e.techniques.length > 0)) {
    out.push(
      "### Optional techniques through the service (each off by default)",
      "",
      "The service again, from a fresh scratch database, with one technique's settings on; the default row is",
      "the run above. P@10 of the adapted space (ALL, and own type), the raw space (ALL), the worst class's change",
      "against the default, the index stage's p50 and ingestion.",
      "",
      ...techniquesTable(r.datasets),
      "",
    );
  }
  for (const e of r.datasets) {
    out.push(`Cross-validation decision, ${e.dataset}:`, "");
    for (const [type, a] of Object.entries(e.adaptation))
      out.push(
        `- ${type} index: served **${a.served}** — ${a.reason}${a.outDim ? ` (projection: ${a.outDim} dims, blend ${a.blend})` : ""}`,
      );
    const prior = Object.values(e.adaptation).find((a) => a.typePrior)?.typePrior;
    if (prior) out.push(`- type prior (imageType ALL): ${prior}`);
    out.push("", `#### ${e.dataset}: P@10 per class, raw vs adapted (ALL)`, "", ...spaceClassTable(e), "");
  }
  for (const e of r.datasets) {
    out.push(`### ${e.dataset}: per class (service; baseline for comparison)`, "", ...classTable(e), "");
  }
  return out.join("\n");
}
