import { type Command, Option } from "commander";
import { ConfigError } from "../config/config.js";
import { adminTokenFromEnv, defaultGraphqlUrl } from "../config/search-client.config.js";

/** What every `models` subcommand takes. */
interface ClientOptions {
  url?: string;
  token?: string;
  json?: boolean;
}

const MODEL_FIELDS = `modelId state preset dimension embedded galleryImages loaded problem promotable notPromotableReason
  registeredAt registeredBy retiredAt indexes { version imageType ready count indexVersion }
  preparation { id status trigger attempt progress { total processed newlyEmbedded failed } error }`;

const OPERATIONS = {
  status: `query { models { ${MODEL_FIELDS} } }`,
  compare: `query C($id: String) { compareModels(candidateModelId: $id) {
    active { modelId queries p10 suggestionAccuracy cvRawP10 cvAdaptedP10 servedSpace perClass { label queries p10 suggestionAccuracy } }
    candidate { modelId queries p10 suggestionAccuracy cvRawP10 cvAdaptedP10 servedSpace perClass { label queries p10 suggestionAccuracy } }
    shadow { queries overlapAt10 top1Agreement suggestionAgreement candidateP50Ms candidateP95Ms activeP50Ms } } }`,
  add: `mutation A($input: RegisterModelInput!) { registerModel(input: $input) { model { ${MODEL_FIELDS} } preparation { id status } } }`,
  promote: `mutation P($id: String!, $reason: String) { promoteModel(modelId: $id, reason: $reason) { modelId previousModelId tookMs } }`,
  rollback: `mutation R($reason: String) { rollbackModel(reason: $reason) { modelId previousModelId tookMs } }`,
  retire: `mutation X($id: String!) { retireModel(modelId: $id) }`,
} as const;

/** Calls the running service; throws with the GraphQL error's code and message. */
async function call(
  opts: ClientOptions,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const url = opts.url ?? defaultGraphqlUrl();
  const token = opts.token ?? adminTokenFromEnv();
  if (!token) throw new Error("Give the admin token with --token or ADMIN_TOKEN.");
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  }).catch((err: Error) => {
    throw new Error(`The service at ${url} does not answer (${err.message}); is it running?`);
  });
  const body = (await res.json().catch(() => ({}))) as {
    data?: Record<string, unknown> | null;
    errors?: { message: string; extensions?: { code?: string } }[];
  };
  const [first] = body.errors ?? [];
  if (first) throw new Error(`${first.extensions?.code ?? "ERROR"}: ${first.message}`);
  return body.data ?? {};
}

const pct = (v: unknown) => (typeof v === "number" ? v.toFixed(3) : "-");

function printModels(models: Record<string, unknown>[]) {
  for (const m of models) {
    const prep = m.preparation as { status: string; progress: { processed: number; total: number } } | null;
    console.log(
      `${String(m.state).padEnd(9)} ${m.modelId}  ${m.dimension}-d  embedded ${m.embedded}/${m.galleryImages}` +
        (prep ? `  preparation ${prep.status} ${prep.progress.processed}/${prep.progress.total}` : "") +
        (m.state === "CANDIDATE"
          ? m.promotable
            ? "  promotable"
            : `  not promotable: ${m.notPromotableReason}`
          : "") +
        (m.problem ? `  problem: ${m.problem}` : ""),
    );
  }
}

function printComparison(c: Record<string, Record<string, unknown> | null>) {
  const rows: [string, string, string][] = [];
  const a = c.active as Record<string, unknown>;
  const b = c.candidate as Record<string, unknown>;
  rows.push(["model", String(a.modelId), String(b.modelId)]);
  for (const k of ["queries", "p10", "suggestionAccuracy", "cvRawP10", "cvAdaptedP10", "servedSpace"])
    rows.push([
      k,
      typeof a[k] === "number" && k !== "queries" ? pct(a[k]) : String(a[k] ?? "-"),
      typeof b[k] === "number" && k !== "queries" ? pct(b[k]) : String(b[k] ?? "-"),
    ]);
  const bClass = new Map((b.perClass as { label: string; p10: number }[]).map((p) => [p.label, p.p10]));
  for (const p of a.perClass as { label: string; p10: number }[])
    rows.push([`P@10 ${p.label}`, pct(p.p10), pct(bClass.get(p.label))]);
  const w = [Math.max(...rows.map((r) => r[0].length)), Math.max(...rows.map((r) => r[1].length))];
  for (const [k, x, y] of rows) console.log(`${k.padEnd(w[0] as number)}  ${x.padEnd(w[1] as number)}  ${y}`);
  const s = c.shadow;
  console.log(
    s
      ? `shadow: ${s.queries} queries, overlap@10 ${pct(s.overlapAt10)}, top-1 agreement ${pct(s.top1Agreement)}, suggestion agreement ${pct(s.suggestionAgreement)}, candidate p50 ${pct(s.candidateP50Ms)} ms`
      : "shadow: no live queries compared yet (MODEL_SHADOW_SHARE)",
  );
}

/**
 * `npm run models -- status|compare|add|promote|rollback|retire`: the model migration from the command line,
 * as an admin client of a running service (the same GraphQL mutations as the web app).
 */
export function addModelsCommand(program: Command): Command {
  const models = program
    .command("models")
    .description(
      "Embedding models of a running service: register a candidate, compare, promote, roll back, retire.",
    );
  const common = (c: Command) =>
    c
      .option("--url <url>", "GraphQL endpoint (default DEFECT_LENS_URL, else http://HOST:PORT/graphql)")
      .option("--token <token>", "admin token (default ADMIN_TOKEN)")
      .option("--json", "print the answer as JSON");
  const run =
    <A extends unknown[]>(body: (...args: A) => Promise<void>) =>
    async (...args: A) => {
      try {
        await body(...args);
      } catch (err) {
        console.error(err instanceof ConfigError ? err.message : (err as Error).message);
        process.exitCode = 1;
      }
    };
  const out = (opts: ClientOptions, data: unknown, human: () => void) =>
    opts.json ? console.log(JSON.stringify(data, null, 2)) : human();

  common(
    models
      .command("status")
      .description("Registered models, their preparation and whether they can be promoted."),
  ).action(
    run(async (opts: ClientOptions) => {
      const d = await call(opts, OPERATIONS.status);
      out(opts, d.models, () => printModels(d.models as Record<string, unknown>[]));
    }),
  );
  common(
    models
      .command("compare")
      .description("The active model and a candidate side by side (labelled gallery, shadow traffic)."),
  )
    .argument("[candidateModelId]", "default: the newest candidate")
    .action(
      run(async (id: string | undefined, opts: ClientOptions) => {
        const d = await call(opts, OPERATIONS.compare, { id: id ?? null });
        out(opts, d.compareModels, () =>
          printComparison(d.compareModels as Record<string, Record<string, unknown> | null>),
        );
      }),
    );
  common(
    models
      .command("add")
      .description(
        "Register a candidate model and queue its preparation (background re-embedding, index build).",
      ),
  )
    .argument("<preset>", "model preset (MODEL_PRESET values)")
    .option("--path <file>", "absolute ONNX path on every replica (default MODELS_DIR/<preset>/model.onnx)")
    .option("--sha256 <hex>", "sha256 of the file (required with --path)")
    .addOption(
      new Option("--resize-mode <mode>", "how a non-square image is made square").choices([
        "crop",
        "fill",
        "pad",
      ]),
    )
    .action(
      run(
        async (
          preset: string,
          opts: ClientOptions & { path?: string; sha256?: string; resizeMode?: string },
        ) => {
          const d = await call(opts, OPERATIONS.add, {
            input: {
              preset,
              path: opts.path ?? null,
              sha256: opts.sha256 ?? null,
              resizeMode: opts.resizeMode ?? null,
            },
          });
          const r = d.registerModel as { model: Record<string, unknown>; preparation: { id: string } | null };
          out(opts, r, () => {
            printModels([r.model]);
            console.log(
              r.preparation
                ? `preparation queued: task ${r.preparation.id}`
                : "preparation queued after the open rebuild",
            );
          });
        },
      ),
    );
  common(
    models
      .command("promote")
      .description("Make a prepared candidate the active model (one step, every replica)."),
  )
    .argument("<modelId>")
    .option("--reason <text>", "why (recorded)")
    .action(
      run(async (id: string, opts: ClientOptions & { reason?: string }) => {
        const d = await call(opts, OPERATIONS.promote, { id, reason: opts.reason ?? null });
        const s = d.promoteModel as { modelId: string; previousModelId: string; tookMs: number };
        out(opts, s, () =>
          console.log(`active model: ${s.modelId} (was ${s.previousModelId}), ${s.tookMs.toFixed(1)} ms`),
        );
      }),
    );
  common(
    models
      .command("rollback")
      .description("Make the previous active model active again (one step, no re-embedding)."),
  )
    .option("--reason <text>", "why (recorded)")
    .action(
      run(async (opts: ClientOptions & { reason?: string }) => {
        const d = await call(opts, OPERATIONS.rollback, { reason: opts.reason ?? null });
        const s = d.rollbackModel as { modelId: string; previousModelId: string; tookMs: number };
        out(opts, s, () =>
          console.log(`active model: ${s.modelId} (was ${s.previousModelId}), ${s.tookMs.toFixed(1)} ms`),
        );
      }),
    );
  common(
    models.command("retire").description("Delete a model that is not active: its embeddings and indexes."),
  )
    .argument("<modelId>")
    .action(
      run(async (id: string, opts: ClientOptions) => {
        await call(opts, OPERATIONS.retire, { id });
        out(opts, { retired: id }, () => console.log(`retired ${id}`));
      }),
    );
  return models;
}
