import type { ModelConfig } from "../config/config.js";
import type { IndexArtifacts } from "../deployment/index-artifacts.js";
import type { Embedder } from "../embedding/embedder.service.js";
import type { Matcher } from "../matchers/matcher.js";
import { IMAGE_TYPES, type ImageType, type MatcherVersion } from "../shared/types.js";

/** Everything one embedding model serves with: its encoder and its own indexes (per matcher version). */
export interface ModelRuntime {
  readonly modelId: string;
  /** The resolved model configuration it was loaded from. */
  readonly config: ModelConfig;
  /** Embedding length (elements). */
  readonly dimension: number;
  /** Embeds with this model only (gallery rebuilds use a throttled twin for candidates). */
  readonly embedder: Embedder;
  readonly matchers: ReadonlyMap<MatcherVersion, Matcher>;
  /** This model's index artifacts (its own local cache folders). */
  readonly artifacts: IndexArtifacts;
  /** Its local index cache: `INDEX_CACHE_DIR/models/<model id>/` (raw indexes, and `adapted/`). */
  readonly cacheDir: string;
  /** Stops its matchers and its inference worker. */
  close(): Promise<void>;
}

/** One index of one model: a matcher version and an image type; without `modelId`, the active model's. */
export interface ModelIndexTarget {
  modelId?: string | undefined;
  version: MatcherVersion;
  imageType: ImageType;
}

/** Every index of one model: each of its matcher versions, each image type. */
export const indexTargetsOf = ({ modelId, matchers }: Pick<ModelRuntime, "modelId" | "matchers">) =>
  [...matchers.keys()].flatMap((version) =>
    IMAGE_TYPES.map((imageType) => ({ modelId, version, imageType })),
  );

/**
 * The embedding models this process serves: the active one, which ranks every search, and the candidates
 * and previous models that are registered and not retired, whose indexes are kept beside it so a promotion
 * or a rollback is a pointer flip. A search takes {@link ModelRuntimes.active} once, so its embedding and
 * every index it searches are of one model.
 */
export interface ModelRuntimes {
  active(): ModelRuntime;
  get(modelId: string): ModelRuntime | undefined;
  /** Every model served, the active one first. */
  all(): ModelRuntime[];
  /** The matcher of one index; undefined when that model or matcher is not served here. */
  matcher(target: ModelIndexTarget): Matcher | undefined;
  /** The active model's matchers, as a live view: after a promotion it names the new model's. */
  readonly activeMatchers: ReadonlyMap<MatcherVersion, Matcher>;
}

/** {@link ModelRuntimes} with the writes the model registry's sync makes. */
export interface MutableModelRuntimes extends ModelRuntimes {
  add(runtime: ModelRuntime): void;
  /** Makes `modelId` (already added) the active model. */
  setActive(modelId: string): void;
  /** Removes a model that is no longer served; never the active one. */
  remove(modelId: string): ModelRuntime | undefined;
}

/**
 * The served models of one process, starting with `initial` as the active model.
 */
export function createModelRuntimes(initial: ModelRuntime): MutableModelRuntimes {
  const runtimes = new Map<string, ModelRuntime>([[initial.modelId, initial]]);
  let activeId = initial.modelId;
  const active = () => runtimes.get(activeId) as ModelRuntime;

  const activeMatchers: ReadonlyMap<MatcherVersion, Matcher> = {
    get size() {
      return active().matchers.size;
    },
    get: (k) => active().matchers.get(k),
    has: (k) => active().matchers.has(k),
    forEach: (cb, thisArg) => {
      for (const [k, v] of active().matchers) cb.call(thisArg, v, k, activeMatchers);
    },
    entries: () => active().matchers.entries(),
    keys: () => active().matchers.keys(),
    values: () => active().matchers.values(),
    [Symbol.iterator]: () => active().matchers[Symbol.iterator](),
  };

  return {
    active,
    get: (id) => runtimes.get(id),
    all: () => [active(), ...[...runtimes.values()].filter((r) => r.modelId !== activeId)],
    matcher: (t) => runtimes.get(t.modelId ?? activeId)?.matchers.get(t.version),
    activeMatchers,
    add(runtime) {
      runtimes.set(runtime.modelId, runtime);
    },
    setActive(modelId) {
      if (!runtimes.has(modelId)) throw new Error(`model ${modelId} is not loaded on this replica`);
      activeId = modelId;
    },
    remove(modelId) {
      if (modelId === activeId) throw new Error("the active model cannot be removed");
      const r = runtimes.get(modelId);
      runtimes.delete(modelId);
      return r;
    },
  };
}
