import type { Logger } from "pino";
import type { ModelConfig } from "../config/config.js";
import type { ModelRecord, ModelRegistryRepository } from "../db/model-registry.repository.js";
import type { ModelRuntime, MutableModelRuntimes } from "./model-runtimes.js";
import { configFromSpec, type ModelSpec, specOf } from "./model-spec.js";

/** Why a registered model is not served on this replica. */
export interface ModelLoadProblem {
  modelId: string;
  reason: string;
  /** Epoch ms of the attempt. */
  at: number;
}

/** A failed load is retried after this long (a file that appears later, a full disk freed). */
const RETRY_LOAD_MS = 30_000;

/**
 * Keeps this replica's served models in step with the deployment's registry: registered models are
 * loaded (each with its own inference worker and indexes), retired ones closed, and the active pointer
 * followed. The registry, not the configuration, decides once a deployment has one: the configured model
 * only seeds an empty database.
 */
export function createModelRegistry({
  repo,
  runtimes,
  load,
  base,
  replicaId,
  logger,
}: {
  repo: ModelRegistryRepository;
  runtimes: MutableModelRuntimes;
  /** Loads one model with its matchers (the composition root's factory). */
  load: (config: ModelConfig) => Promise<ModelRuntime>;
  /** The configured model: its per-process settings apply to every model loaded here. */
  base: ModelConfig;
  replicaId: string;
  logger: Logger;
}) {
  const problems = new Map<string, ModelLoadProblem>();
  let registered: ModelRecord[] = [];
  let activeId: string | null = null;
  let warnedConfigured = false;
  const configuredId = runtimes.active().modelId;

  async function ensureLoaded(record: ModelRecord): Promise<ModelRuntime | undefined> {
    const have = runtimes.get(record.modelId);
    if (have) return have;
    const known = problems.get(record.modelId);
    if (known && Date.now() - known.at < RETRY_LOAD_MS) return undefined;
    try {
      const runtime = await load(configFromSpec(base, record.spec as ModelSpec));
      if (runtime.modelId !== record.modelId) {
        await runtime.close();
        throw new Error(
          `the file loads as model ${runtime.modelId}, not ${record.modelId}: it differs on this replica`,
        );
      }
      // A registration on this replica may have added it while this load ran: keep that one.
      const meanwhile = runtimes.get(record.modelId);
      if (meanwhile) {
        await runtime.close();
        return meanwhile;
      }
      runtimes.add(runtime);
      problems.delete(record.modelId);
      logger.info({ modelId: record.modelId }, "registered embedding model loaded");
      return runtime;
    } catch (err) {
      problems.set(record.modelId, {
        modelId: record.modelId,
        reason: (err as Error).message,
        at: Date.now(),
      });
      logger.error({ err, modelId: record.modelId }, "registered embedding model could not be loaded here");
      return undefined;
    }
  }

  return {
    /** Registers the configured model as the active one on an empty database (the first start). */
    async seed(): Promise<void> {
      const r = runtimes.active();
      await repo.seed({ modelId: r.modelId, spec: specOf(r.config), dimension: r.dimension, replicaId });
    },

    /**
     * One read of the registry: loads what is registered and not served, follows the active pointer,
     * closes what was retired. A model that cannot be loaded here is reported in {@link problems}; when it
     * is the active one, the replica keeps serving the model it has and is not ready.
     */
    async sync(): Promise<void> {
      // Served before this read began: only those can be closed as unregistered below. A registration on
      // this replica adopts its runtime before it writes the registry, so a read that began earlier would
      // miss it and close it while its preparation is being queued; the next read sees the registration
      // (or its failure, and closes the runtime then).
      const servedBefore = new Set(runtimes.all().map((r) => r.modelId));
      const [models, active] = await Promise.all([repo.models(), repo.active()]);
      registered = models;
      activeId = active?.modelId ?? null;
      const live = models.filter((m) => m.retiredAt === null);
      for (const m of live) await ensureLoaded(m);
      if (activeId && runtimes.get(activeId) && runtimes.active().modelId !== activeId) {
        logger.info({ from: runtimes.active().modelId, to: activeId }, "active embedding model switched");
        runtimes.setActive(activeId);
      }
      if (activeId && activeId !== configuredId && !warnedConfigured) {
        warnedConfigured = true;
        logger.warn(
          { configured: configuredId, active: activeId },
          "the configured model (MODEL_PRESET / MODEL_PATH) is not the deployment's active model; serving the active one. Register the configured one as a candidate (`npm run models -- add`) to switch",
        );
      }
      const keep = new Set(live.map((m) => m.modelId));
      for (const r of runtimes.all()) {
        if (keep.has(r.modelId) || r.modelId === runtimes.active().modelId || !servedBefore.has(r.modelId))
          continue;
        runtimes.remove(r.modelId);
        await r.close().catch((err) => logger.warn({ err }, "closing a retired model failed"));
        logger.info({ modelId: r.modelId }, "embedding model no longer registered: closed");
      }
    },

    /** The registry as last read (retired models included). */
    registered: () => registered,
    /** The deployment's active model id as last read; null before the first read. */
    activeModelId: () => activeId,
    /** Registered models this replica could not load, with why. */
    problems: () => [...problems.values()],
  };
}

/** The model registry's type, derived from its factory. */
export type ModelRegistry = ReturnType<typeof createModelRegistry>;
