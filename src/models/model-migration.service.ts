import type { Logger } from "pino";
import type { AppConfig, ModelConfig } from "../config/config.js";
import type { ImageRepository } from "../db/images.repository.js";
import type {
  ActiveModelChange,
  ModelRegistryRepository,
  ShadowSummary,
} from "../db/model-registry.repository.js";
import type { Replica } from "../deployment/replica.js";
import type { RebuildJobs, RebuildTask } from "../jobs/rebuild.job.js";
import { databaseCall, errors, isDomainError } from "../shared/errors.js";
import { IMAGE_TYPES } from "../shared/types.js";
import { comparisonQueries, type LabelledQuality, labelledQuality } from "./model-comparison.js";
import type { ModelRegistry } from "./model-registry.js";
import { indexTargetsOf, type ModelRuntime, type MutableModelRuntimes } from "./model-runtimes.js";
import { type ModelRegistration, resolveRegistration, specOf } from "./model-spec.js";

/** Where a registered model stands. */
export type ModelState = "active" | "candidate" | "retired";

/** One registered model as status and the CLI show it. */
export interface ModelView {
  modelId: string;
  state: ModelState;
  preset: string;
  path: string;
  dimension: number;
  registeredAt: string;
  registeredBy: string;
  retiredAt: string | null;
  /** Whether this replica serves it (loaded, with its indexes followed). */
  loaded: boolean;
  /** Why this replica could not load it, or null. */
  problem: string | null;
  /** Gallery images with an embedding of this model, of all gallery images (both image types). */
  embedded: number;
  galleryImages: number;
  /** Per index of this model: whether it is served here, and its active version. */
  indexes: {
    version: string;
    imageType: string;
    ready: boolean;
    count: number;
    indexVersionId: string | null;
    activeIndexVersionId: string | null;
  }[];
  /** Its newest preparation (re-embedding + build) task, or null. */
  preparation: RebuildTask | null;
  /** Whether a promotion would be accepted now, and if not why. */
  promotable: boolean;
  notPromotableReason: string | null;
}

/** Two models side by side: the labelled gallery's figures and the shadow traffic between them. */
export interface ModelComparison {
  active: LabelledQuality;
  candidate: LabelledQuality;
  /** Shadow traffic with the candidate, as recorded by every replica. */
  shadow: ShadowSummary | null;
}

/** What a promotion or a rollback did. */
export interface ModelSwitch {
  change: ActiveModelChange;
  /** From the request to the new model answering on this replica (ms). */
  ms: number;
}

/**
 * Embedding models as versions: register a candidate (its gallery is re-embedded and its indexes built in
 * the background, as a deployment-wide rebuild task), compare it with the active one, promote it in one
 * step and roll back in one step, retire what is no longer wanted. Authorisation is the caller's job.
 */
export function createModelMigrationService({
  config,
  repo,
  registry,
  runtimes,
  load,
  jobs,
  replica,
  repository,
  logger,
}: {
  config: Pick<AppConfig, "model" | "models" | "adaptation">;
  repo: ModelRegistryRepository;
  registry: ModelRegistry;
  runtimes: MutableModelRuntimes;
  load: (config: ModelConfig) => Promise<ModelRuntime>;
  jobs: RebuildJobs;
  replica: Replica;
  repository: ImageRepository;
  logger: Logger;
}) {
  /** Models whose preparation this process queued already (so a failing one is not queued in a loop). */
  const queued = new Set<string>();

  /**
   * The runtime served for `loaded`'s model: `loaded` itself, added, or the one already served (a load by
   * the registry's read on the NOTIFY, say), with `loaded` closed, so there is one runtime per model.
   */
  async function adopt(loaded: ModelRuntime): Promise<ModelRuntime> {
    const served = runtimes.get(loaded.modelId);
    if (!served) {
      runtimes.add(loaded);
      return loaded;
    }
    if (served !== loaded) await loaded.close();
    return served;
  }

  /** Why `r` cannot be promoted now, or null. */
  async function notPromotable(r: ModelRuntime): Promise<string | null> {
    for (const t of indexTargetsOf(r)) {
      const want = replica.activeOf(t.version, t.imageType, r.modelId);
      const s = r.matchers.get(t.version)?.state(t.imageType);
      if (!want) return `its ${t.version}/${t.imageType} index is not built yet (see its preparation task)`;
      if (!s?.ready || s.indexVersionId !== want.indexVersionId)
        return `its ${t.version}/${t.imageType} index is not served on replica ${replica.replicaId} yet`;
    }
    const active = runtimes.active().modelId;
    const missing = await repository.countMissingEmbeddings(r.modelId, active);
    if (missing > 0)
      return `${missing} gallery images have an embedding of the active model but none of this one (added by a CLI import since its preparation); prepare it again`;
    return null;
  }

  async function prepare(r: ModelRuntime, by: string): Promise<RebuildTask | null> {
    queued.add(r.modelId);
    try {
      return await jobs.start({ targets: indexTargetsOf(r), trigger: "candidate", requestedBy: by });
    } catch (err) {
      if (isDomainError(err) && err.code === "REBUILD_IN_PROGRESS") {
        // Queued once the open rebuild ends (preparePending, after each registry read).
        queued.delete(r.modelId);
        return null;
      }
      throw err;
    }
  }

  async function switchTo(modelId: string, reason: string, by: string): Promise<ModelSwitch> {
    const t0 = performance.now();
    const r = runtimes.get(modelId);
    if (!r) {
      const problem = registry.problems().find((p) => p.modelId === modelId);
      throw errors.modelNotReady(
        problem
          ? `Model ${modelId} cannot be loaded on replica ${replica.replicaId}: ${problem.reason}`
          : `Model ${modelId} is not registered (or was retired); list them with \`npm run models -- status\`.`,
      );
    }
    if (runtimes.active().modelId === modelId)
      throw errors.badInput(`Model ${modelId} is already the active model.`);
    const why = await databaseCall("The promotion could not be checked", () => notPromotable(r));
    if (why) throw errors.modelNotReady(`Model ${modelId} cannot be promoted yet: ${why}.`, { modelId });
    const need = indexTargetsOf(r).length;
    const change = await databaseCall("The promotion was not applied", () =>
      repo.setActive({ modelId, reason, setBy: by, replicaId: replica.replicaId }, async (c, _active) => {
        const { rows } = await c.query("select count(*)::int as n from active_indexes where model_id = $1", [
          modelId,
        ]);
        if ((rows[0]?.n ?? 0) < need)
          throw errors.modelNotReady(`Model ${modelId} lost an index pointer meanwhile; retry.`);
      }),
    );
    runtimes.setActive(modelId);
    await registry.sync().catch(() => undefined);
    const ms = performance.now() - t0;
    logger.info(
      { modelId, previous: change.previousModelId, ms: Math.round(ms) },
      "embedding model promoted",
    );
    return { change, ms };
  }

  return {
    /** Every registered model (retired ones too), the active one first. */
    async list(): Promise<ModelView[]> {
      const [records, tasks] = await databaseCall("The model registry could not be read", () =>
        Promise.all([repo.models(), jobs.list()]),
      );
      const activeId = registry.activeModelId() ?? runtimes.active().modelId;
      /** Gallery images in all, and those with an embedding of `modelId`. */
      const coverage = (modelId: string) =>
        databaseCall("The gallery could not be counted", async () => {
          let galleryImages = 0;
          let embedded = 0;
          for (const t of IMAGE_TYPES) {
            const c = await repository.countGallery(t, modelId);
            galleryImages += c.total;
            embedded += c.total - c.missing;
          }
          return { galleryImages, embedded };
        });
      const { galleryImages } = await coverage(activeId);
      const out: ModelView[] = [];
      for (const m of records) {
        const r = runtimes.get(m.modelId);
        const spec = m.spec as ModelConfig;
        const embedded = m.retiredAt === null ? (await coverage(m.modelId)).embedded : 0;
        const state: ModelState = m.retiredAt ? "retired" : m.modelId === activeId ? "active" : "candidate";
        const why = r && state === "candidate" ? await notPromotable(r) : null;
        out.push({
          modelId: m.modelId,
          state,
          preset: spec.name,
          path: spec.path,
          dimension: m.dimension,
          registeredAt: m.registeredAt,
          registeredBy: m.registeredBy,
          retiredAt: m.retiredAt,
          loaded: r !== undefined,
          problem: registry.problems().find((p) => p.modelId === m.modelId)?.reason ?? null,
          embedded,
          galleryImages,
          indexes: r
            ? indexTargetsOf(r).map((t) => {
                const s = r.matchers.get(t.version)?.state(t.imageType);
                return {
                  version: t.version,
                  imageType: t.imageType,
                  ready: s?.ready ?? false,
                  count: s?.count ?? 0,
                  indexVersionId: s?.indexVersionId ?? null,
                  activeIndexVersionId:
                    replica.activeOf(t.version, t.imageType, m.modelId)?.indexVersionId ?? null,
                };
              })
            : [],
          preparation:
            tasks.find((t) => t.trigger === "candidate" && t.targets.some((x) => x.modelId === m.modelId)) ??
            null,
          promotable: state === "candidate" && r !== undefined && why === null,
          notPromotableReason: state === "candidate" ? (r ? why : "not loaded on this replica") : null,
        });
      }
      return out.sort((a, b) => (a.state === "active" ? -1 : b.state === "active" ? 1 : 0));
    },

    /**
     * Registers a candidate model and queues its preparation (the gallery re-embedded at MODEL_REEMBED_SHARE,
     * its indexes built with their own adapted space and type prior, published, not served to searches).
     * Registering a registered model again queues its preparation again (after a CLI import, say).
     * @throws DomainError BAD_USER_INPUT (unknown preset, bad checksum or path, the file cannot be loaded, or
     *   it is the active model), SERVICE_UNAVAILABLE.
     */
    async register(
      input: ModelRegistration,
      by: string,
    ): Promise<{ model: ModelView; preparation: RebuildTask | null }> {
      const cfg = resolveRegistration(config.model, config.models.dir, input);
      let runtime = runtimes
        .all()
        .find(
          (r) =>
            r.config.path === cfg.path &&
            r.config.resizeMode === cfg.resizeMode &&
            r.config.name === cfg.name,
        );
      if (!runtime) {
        let loaded: ModelRuntime;
        try {
          loaded = await load(cfg);
        } catch (err) {
          throw errors.badInput(`The model could not be loaded: ${(err as Error).message}`);
        }
        if (loaded.modelId === runtimes.active().modelId) await loaded.close();
        else runtime = await adopt(loaded);
      }
      if (!runtime || runtime.modelId === runtimes.active().modelId)
        throw errors.badInput(`Model ${runtimes.active().modelId} is already the active model.`);
      const adopted = runtime;
      // Served before it is registered: if the write fails, the registry's next read closes it.
      await databaseCall("The model could not be registered", () =>
        repo.register({
          modelId: adopted.modelId,
          spec: specOf(adopted.config),
          dimension: adopted.dimension,
          by,
        }),
      );
      logger.info({ modelId: runtime.modelId, by }, "candidate embedding model registered");
      const preparation = await databaseCall("The preparation could not be queued", () =>
        prepare(runtime, by),
      );
      const model = (await this.list()).find((m) => m.modelId === runtime.modelId) as ModelView;
      return { model, preparation };
    },

    /**
     * Makes a registered model the active one for every replica, in one transaction: every index of every
     * matcher switches together, and no search mixes two models (each takes the active model once).
     * @throws DomainError MODEL_NOT_READY (indexes not built or not served here, or images without its
     *   embedding), BAD_USER_INPUT (already active), SERVICE_UNAVAILABLE.
     */
    promote(modelId: string, reason: string | null | undefined, by: string): Promise<ModelSwitch> {
      return switchTo(modelId, reason?.trim() || "promoted by an admin", by);
    },

    /**
     * Makes the model active before the current one active again (the same one step as a promotion; its
     * embeddings and indexes were kept, so nothing is re-embedded).
     * @throws DomainError NOT_FOUND (no earlier model, or it was retired), MODEL_NOT_READY, SERVICE_UNAVAILABLE.
     */
    async rollback(reason: string | null | undefined, by: string): Promise<ModelSwitch> {
      const current = await databaseCall("The active model could not be read", () => repo.active());
      const previous = current?.previousModelId;
      if (!previous) throw errors.notFound("No earlier active model to roll back to.");
      const record = await databaseCall("The model registry could not be read", () => repo.model(previous));
      if (!record || record.retiredAt)
        throw errors.notFound(`The previous model ${previous} was retired; register it again to use it.`);
      return switchTo(previous, reason?.trim() || "rolled back by an admin", by);
    },

    /**
     * Retires a model that is not active: its embeddings, index pointers and index files go, and every
     * replica closes it. A rollback to it is then no longer possible without a new preparation.
     * @throws DomainError BAD_USER_INPUT (the active model), NOT_FOUND, REBUILD_IN_PROGRESS (its preparation
     *   runs), SERVICE_UNAVAILABLE.
     */
    async retire(modelId: string, by: string): Promise<void> {
      const record = await databaseCall("The model registry could not be read", () => repo.model(modelId));
      if (!record || record.retiredAt) throw errors.notFound(`No registered model ${modelId}.`);
      const open = await databaseCall("The rebuild queue could not be read", () => jobs.open());
      if (open?.targets.some((t) => t.modelId === modelId)) throw errors.rebuildInProgress(open.id);
      const versions = await databaseCall("The model was not retired", () =>
        repo.retire(modelId, async (_c, active) => {
          if (active === modelId)
            throw errors.badInput(`Model ${modelId} is the active model; promote another one first.`);
        }),
      );
      const r = runtimes.get(modelId);
      for (const v of versions)
        await r?.artifacts
          .remove(v.artifactKey)
          .catch((err) => logger.warn({ err }, "artifact removal failed"));
      await registry.sync().catch(() => undefined);
      logger.info({ modelId, by, indexVersions: versions.length }, "embedding model retired");
    },

    /**
     * The active model and `candidateId` side by side: leave-one-out P@10 and suggestion accuracy on the
     * same labelled gallery images (MODEL_COMPARE_QUERIES of them), the gate's cross-validated P@10, and the
     * shadow traffic recorded between them.
     * @throws DomainError NOT_FOUND (not served here), INDEX_NOT_READY, SERVICE_UNAVAILABLE.
     */
    async compare(candidateId?: string | null): Promise<ModelComparison> {
      const active = runtimes.active();
      const candidate = candidateId
        ? runtimes.get(candidateId)
        : runtimes.all().find((r) => r.modelId !== active.modelId);
      if (!candidate || candidate.modelId === active.modelId)
        throw errors.notFound(
          candidateId
            ? `Model ${candidateId} is not served by replica ${replica.replicaId} (or is the active one).`
            : "No candidate model is registered; add one with registerModel or `npm run models -- add`.",
        );
      const queries = await databaseCall("The gallery could not be read", () =>
        comparisonQueries(repository, [active.modelId, candidate.modelId], config.models.compareQueries),
      );
      const [a, c] = [
        await labelledQuality({
          runtime: active,
          repository,
          queries,
          suggestionTopK: config.adaptation.suggestionTopK,
        }),
        await labelledQuality({
          runtime: candidate,
          repository,
          queries,
          suggestionTopK: config.adaptation.suggestionTopK,
        }),
      ];
      const shadow = (
        await databaseCall("The shadow traffic could not be read", () => repo.shadowSummaries())
      ).find((s) => s.candidateModelId === candidate.modelId && s.activeModelId === active.modelId);
      return { active: a, candidate: c, shadow: shadow ?? null };
    },

    /** Shadow traffic of every pair of models. */
    shadow: () => databaseCall("The shadow traffic could not be read", () => repo.shadowSummaries()),

    /**
     * Queues the preparation of candidates that have none yet (registered on another replica while a
     * rebuild was open, or after a restart with the task gone): after each read of the registry.
     */
    async preparePending(): Promise<void> {
      if (await jobs.open()) return;
      let tasks: readonly RebuildTask[] | undefined;
      for (const r of runtimes.all()) {
        if (r.modelId === runtimes.active().modelId || queued.has(r.modelId)) continue;
        const built = indexTargetsOf(r).every((t) => replica.activeOf(t.version, t.imageType, r.modelId));
        if (built) continue;
        tasks ??= await jobs.list();
        const recent = tasks.find(
          (t) => t.trigger === "candidate" && t.targets.some((x) => x.modelId === r.modelId),
        );
        if (recent) {
          queued.add(r.modelId);
          continue;
        }
        await prepare(r, `preparation of ${r.modelId}`);
        return;
      }
    },
  };
}

/** The model migration service's type, derived from its factory. */
export type ModelMigrationService = ReturnType<typeof createModelMigrationService>;
