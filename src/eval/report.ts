import type { DatasetEvaluation, MethodSummary } from "./evaluate.js";
import { type MachineInfo, machineLine } from "./machine.js";
import type { RetrievalMetrics } from "./metrics.js";
import { fmt } from "./stats.js";
import { againstMin, P10_TARGETS } from "./targets.js";

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

/** The Markdown report: summary table with targets, service-vs-direct check, per-class tables. */
export function renderEvaluation(r: EvaluationReport): string {
  const out: string[] = [
    `## Retrieval quality — ${r.date}`,
    "",
    `- Command: \`${r.command}\``,
    `- Machine: ${machineLine(r.machine)}`,
    `- Model preset: ${r.preset} (${r.datasets[0]?.modelId ?? "?"}), matcher ${r.version}; run took ${(r.durationMs / 1000).toFixed(0)} s`,
    "- Service = gallery ingested with the real ingestion path, indexes built by the rebuild job, every query image",
    "  sent as base64 to the real search path against the defect and the normal index, hits merged by score.",
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
      "service ≥ direct (P@10)",
      "top-10 identical",
      "max abs Δ overall",
      "own-type index P@10 (service / direct)",
      "ingest img/s",
      "search p50 / p99 ms (at topK)",
      "groups straddling",
      "queries in gallery",
      "gallery duplicates",
    ]),
    ...r.datasets.map((e) =>
      row([
        e.dataset,
        e.service.overall.p10 + 1e-9 >= e.direct.overall.p10 ? "yes" : "**no**",
        `${(e.agreement.top10Identical * 100).toFixed(1)}%`,
        fmt(e.agreement.maxOverallDelta, 4),
        `${fmt(e.ownType.service.overall.p10)} / ${fmt(e.ownType.direct.overall.p10)}`,
        fmt(e.ingest.imagesPerSecond, 1),
        `${fmt(e.searchMs.p50, 1)} / ${fmt(e.searchMs.p99, 1)}`,
        String(e.checks.groupsStraddling),
        String(e.checks.queriesInGallery),
        String(e.checks.galleryDuplicates),
      ]),
    ),
    "",
  ];
  for (const e of r.datasets) {
    out.push(`### ${e.dataset}: per class (service; baseline for comparison)`, "", ...classTable(e), "");
  }
  return out.join("\n");
}
