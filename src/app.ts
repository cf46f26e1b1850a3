import path from "node:path";
import PQueue from "p-queue";
import type { Logger } from "pino";
import { DEFAULT_GATE } from "./adapted/cross-validation.js";
import { type AdminService, createAdminService } from "./admin/admin.service.js";
import type { AppConfig, ModelConfig } from "./config/config.js";
import { applyNativeThreadSettings } from "./config/native-threads.js";
import { createDbClient, type DbClient } from "./db/db.client.js";
import { createGalleryEditsRepository } from "./db/gallery-edits.repository.js";
import { createImageRepository, type ImageRepository } from "./db/images.repository.js";
import { createModelRegistryRepository } from "./db/model-registry.repository.js";
import { createIndexArtifacts } from "./deployment/index-artifacts.js";
import { createReplica, defaultReplicaId, type Replica } from "./deployment/replica.js";
import { createServingStateRepository } from "./deployment/serving-state.repository.js";
import { createEmbedder, type Embedder } from "./embedding/embedder.service.js";
import { type EmbeddingModel, loadEmbeddingModel } from "./embedding/embedding.model.js";
import { ensureModelFile } from "./embedding/model.file.js";
import { createGalleryService, type GalleryService } from "./gallery/gallery.service.js";
import { createGalleryEditor, type GalleryEditor } from "./gallery/gallery-editor.service.js";
import { DEFAULT_HASH_RULE } from "./gallery/nearest-image.js";
import { startGraphQLEndpoint } from "./graphql/graphql.server.js";
import { createSearchInputParser } from "./graphql/search-input.js";
import { type HttpServer, type Readiness, startHttpServer } from "./http/http.server.js";
import { createFaissWorkerBackend } from "./index/faiss/faiss-worker.backend.js";
import { createIndexStore, indexScratchDir } from "./index/index.store.js";
import type { VectorIndexBackend } from "./index/vector-index.js";
import { createIngestService, type IngestService } from "./ingest/ingest.service.js";
import { loadSampleGallery, type SampleGalleryResult } from "./ingest/sample-gallery.js";
import { createCompactionPolicy } from "./jobs/compaction.js";
import { planStartup, startFromLocalCache } from "./jobs/index-startup.js";
import { createRebuildJobs, type RebuildJobs } from "./jobs/rebuild.job.js";
import { createMatcher, type Matcher } from "./matchers/matcher.js";
import { createV1GallerySource } from "./matchers/v1.gallery-source.js";
import { createV2GallerySource } from "./matchers/v2.gallery-source.js";
import { createModelMigrationService, type ModelMigrationService } from "./models/model-migration.service.js";
import { createModelRegistry } from "./models/model-registry.js";
import { createModelRuntimes, type ModelRuntime, type ModelRuntimes } from "./models/model-runtimes.js";
import { createShadowTraffic, type ShadowTraffic } from "./models/shadow-traffic.js";
import { throttleBatches } from "./models/throttle.js";
import { createMetrics, type Metrics } from "./observability/metrics.js";
import { createMatcherVersionFlag } from "./search/matcher-version.flag.js";
import { createSearchService, MAX_PER_GROUP, type SearchService } from "./search/search.service.js";
import { IMAGE_TYPES, type MatcherVersion } from "./shared/types.js";
import { type Infrastructure, startInfrastructure } from "./startup/infrastructure.js";
import { lowerWorkerThreadPriority } from "./startup/thread-priority.js";
import { type BlobStore, createMinioBlobStore } from "./storage/blob-store.js";
import { backfillThumbnails } from "./thumbnails/thumbnail-backfill.js";

/** The object graph of a running service. */
export interface App {
  readonly config: AppConfig;
  readonly logger: Logger;
  readonly db: DbClient;
  readonly repository: ImageRepository;
  readonly blobStore: BlobStore;
  /** The active model's embedder (it changes with a promotion). */
  readonly embedder: Embedder;
  /** The active model's matchers, a live view (it follows a promotion). */
  readonly matchers: ReadonlyMap<MatcherVersion, Matcher>;
  /** Every embedding model served here: the active one, candidates, the previous one. */
  readonly models: ModelRuntimes;
  /** Register, compare, promote, roll back and retire embedding models. */
  readonly modelMigration: ModelMigrationService;
  /** Live searches ranked again by the candidate, off the request's path. */
  readonly shadow: ShadowTraffic;
  readonly jobs: RebuildJobs;
  /** This process's place in the deployment: flag, active index versions, heartbeat. */
  readonly replica: Replica;
  readonly search: SearchService;
  readonly admin: AdminService;
  readonly ingest: IngestService;
  readonly gallery: GalleryService;
  /** Gallery edits through the API: add, relabel, remove, near-duplicate review. */
  readonly editor: GalleryEditor;
  readonly metrics: Metrics;
  /** Why the database was unreachable at startup, or null. */
  readonly startupDatabaseError: string | null;
  /** Whether the active matcher's indexes are all served (`/readyz`). */
  readiness(): Readiness;
  /** What the import of the shipped sample gallery did (`loadSampleGallery`), or null when not asked. */
  readonly sampleGallery: SampleGalleryResult | null;
  /** Starts the HTTP server: web app, GraphQL, health and metrics. */
  listen(): Promise<HttpServer>;
  /** Stops background work, the HTTP server, the model and any embedded server. */
  close(): Promise<void>;
}

/** Options of {@link createApp}. */
export interface CreateAppOptions {
  /** Load or rebuild indexes at startup (the server does; CLI commands that only ingest do not). */
  initialiseIndexes?: boolean;
  /**
   * Import the shipped sample gallery (config.sample) before the indexes start, then wait for the startup
   * rebuild, so the first search already has hits (`npm start -- --with-sample-gallery`).
   */
  loadSampleGallery?: boolean;
  /**
   * The database and object storage, already starting (`startInfrastructure`): main.ts starts them before
   * it loads the rest of the service, so that embedded PostgreSQL's initdb (about 2 s on a first start)
   * overlaps about 1.2 s of module loading. createApp owns them from here: it stops them on close or when
   * it fails. Default: started here.
   */
  infrastructure?: Promise<Infrastructure>;
  /** Components to use instead of the configured ones (tests, benchmarks). */
  overrides?: {
    /** Where indexes are built and searched; default the FAISS worker backend. */
    indexBackend?: VectorIndexBackend;
  };
}

const DB_CHECK_TIMEOUT_MS = 2000;

/**
 * The composition root: builds every component from the configuration and wires them together.
 * Nothing else constructs services, so there is exactly one object graph per process.
 * @throws Error when the model cannot be loaded or an embedded server cannot start.
 */
export async function createApp(
  config: AppConfig,
  logger: Logger,
  {
    initialiseIndexes = true,
    loadSampleGallery: withSample = false,
    infrastructure,
    overrides = {},
  }: CreateAppOptions = {},
): Promise<App> {
  const cleanups: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const c of cleanups.reverse())
      await c().catch((err) => logger.warn({ err }, "shutdown step failed"));
  };
  try {
    // The configured model's inference worker starts (and loads its session) while the database and
    // object storage start: on a first start, embedded PostgreSQL's initdb takes about 2 s.
    let firstModelAdopted = false;
    const firstModel = ensureModelFile(config.model, logger).then((sha256) =>
      loadEmbeddingModel(config.model, sha256),
    );
    firstModel.catch(() => {});
    cleanups.push(async () => {
      if (!firstModelAdopted) await (await firstModel.catch(() => undefined))?.close();
    });
    const infra = await (infrastructure ?? startInfrastructure(config, logger));
    cleanups.push(infra.stop);
    const dbUrl = infra.databaseUrl;
    const db = createDbClient({ url: dbUrl, logger, queryTimeoutMs: config.limits.dbQueryTimeoutMs });
    cleanups.push(db.close);
    let startupDatabaseError: string | null = null;
    try {
      await db.migrate();
    } catch (err) {
      startupDatabaseError = (err as Error).message || String(err);
      logger.error({ err }, "database unreachable at startup; serving persisted indexes only");
    }

    const blobStore = createMinioBlobStore({
      ...infra.s3,
      bucket: config.storage.bucket,
      region: config.storage.region,
      requestTimeoutMs: config.limits.s3RequestTimeoutMs,
      publicEndpoint: config.storage.publicEndpoint,
    });
    await blobStore
      .ensureBucket()
      .catch((err) => logger.error({ err }, "object storage unreachable at startup"));

    const limits = {
      maxBytes: config.limits.maxImageBytes,
      maxPixels: config.limits.maxImagePixels,
      minSide: config.limits.minImageSide,
    };
    let runtimes: ReturnType<typeof createModelRuntimes> | undefined;
    const metrics = createMetrics({
      indexStates: () =>
        runtimes
          ? [...runtimes.activeMatchers.values()].flatMap((m) => IMAGE_TYPES.map((t) => m.state(t)))
          : [],
      activeIndexVersion: (s) => replica?.activeOf(s.version, s.imageType)?.indexVersionId ?? null,
    });
    const repository = createImageRepository({ db: db.db });
    const edits = createGalleryEditsRepository({ db: db.db });
    const threads = applyNativeThreadSettings(config);
    logger.debug({ threads }, "native thread settings");
    const backend =
      overrides.indexBackend ??
      createFaissWorkerBackend({
        logger,
        threads: { build: config.index.buildThreads, search: config.index.threads },
        scratchDir: await indexScratchDir(config.index.cacheDir),
      });
    const gate = {
      ...DEFAULT_GATE,
      folds: config.adaptation.folds,
      minGallery: config.adaptation.minGallery,
      minClassImages: config.adaptation.minClassImages,
    };
    /**
     * One embedding model with everything it serves with: its inference worker, its matchers and its own
     * local index cache (`INDEX_CACHE_DIR/models/<model id>/`). A candidate's gallery rebuilds embed at
     * MODEL_REEMBED_SHARE; the active model's do not wait.
     */
    const loadRuntime = async (
      modelConfig: ModelConfig,
      preloaded?: Promise<EmbeddingModel>,
    ): Promise<ModelRuntime> => {
      const model = preloaded
        ? await preloaded
        : await loadEmbeddingModel(modelConfig, await ensureModelFile(modelConfig, logger));
      const embedder = createEmbedder({ model, modelConfig, limits, onEmbedded: metrics.countEmbeddings });
      const galleryEmbedder = throttleBatches(embedder, () =>
        runtimes && runtimes.active().modelId !== model.modelId ? config.models.reembedShare : 1,
      );
      const root = path.join(config.index.cacheDir, "models", model.modelId.replace(/[^A-Za-z0-9._-]/g, "_"));
      const store = createIndexStore({ root });
      const adaptedStore = createIndexStore({ root: path.join(root, "adapted") });
      const matcherDeps = {
        adaptation: {
          enabled: config.adaptation.enabled,
          defaultSpace: config.adaptation.defaultSpace,
          gate,
          store: adaptedStore,
        },
        store,
        backend,
        modelId: model.modelId,
        dimension: model.dimension,
        index: config.index,
        logger,
      };
      const matchers = new Map<MatcherVersion, Matcher>();
      matchers.set(
        "v2",
        createMatcher({
          ...matcherDeps,
          version: "v2",
          source: createV2GallerySource({ repository, edits, blobStore, embedder: galleryEmbedder, logger }),
        }),
      );
      if (config.matcher.v1GalleryDir) {
        matchers.set(
          "v1",
          createMatcher({
            ...matcherDeps,
            version: "v1",
            source: createV1GallerySource({
              dir: config.matcher.v1GalleryDir,
              embedder: galleryEmbedder,
              logger,
            }),
          }),
        );
      }
      logger.info(
        { modelId: model.modelId, dimension: model.dimension, path: modelConfig.path },
        "embedding model loaded",
      );
      return {
        modelId: model.modelId,
        config: modelConfig,
        dimension: model.dimension,
        embedder,
        matchers,
        artifacts: createIndexArtifacts({ blobStore, raw: store, adapted: adaptedStore }),
        cacheDir: root,
        async close() {
          for (const m of matchers.values()) await m.close();
          await model.close();
        },
      };
    };
    runtimes = createModelRuntimes(await loadRuntime(config.model, firstModel));
    firstModelAdopted = true;
    const models = runtimes;
    cleanups.push(async () => {
      for (const r of models.all()) await r.close();
    });
    const matchers = models.activeMatchers;
    const replicaId = config.replica.replicaId ?? defaultReplicaId();
    const servingState = createServingStateRepository(db.pool);
    const flag = createMatcherVersionFlag(config.matcher.initialVersion);
    // One writer of the local index cache at a time: a rebuild's save, a download's install, a load.
    const cacheLock = new PQueue({ concurrency: 1 });
    const runExclusive = <T>(run: () => Promise<T>) => cacheLock.add(run) as Promise<T>;
    let replica: Replica | undefined;
    let compaction: ReturnType<typeof createCompactionPolicy> | undefined;
    const modelRepo = createModelRegistryRepository(db.pool);
    const registry = createModelRegistry({
      repo: modelRepo,
      runtimes: models,
      load: loadRuntime,
      base: config.model,
      replicaId,
      logger,
    });
    let migration: ModelMigrationService | undefined;
    const jobs = createRebuildJobs({
      pool: db.pool,
      databaseUrl: dbUrl,
      models,
      loadModel: () => registry.sync(),
      publish: (target, outcome, guard) => (replica as Replica).publish(target, outcome, guard),
      runExclusive,
      replicaId,
      isReplicaStale: (id) => servingState.isStale(id, config.replica.staleMs),
      settings: { ...config.rebuild, replicaStaleMs: config.replica.staleMs, pollMs: config.replica.pollMs },
      logger,
      onFinished: metrics.observeRebuild,
    });
    cleanups.push(() => jobs.close());
    compaction = createCompactionPolicy({ matchers, jobs, settings: config.gallery.compaction, logger });
    const firstContact = async () => {
      await db.migrate();
      await servingState.seedMatcherVersion(config.matcher.initialVersion, replicaId);
      await registry.seed();
      await registry.sync();
    };
    replica = createReplica({
      databaseUrl: dbUrl,
      repo: servingState,
      models,
      flag,
      jobs: () => jobs,
      runExclusive,
      isBusy: () => cacheLock.size + cacheLock.pending > 0,
      settings: { ...config.replica, replicaId },
      follow: initialiseIndexes,
      onFirstContact: startupDatabaseError === null ? undefined : firstContact,
      onGallerySynced: initialiseIndexes
        ? () => (compaction as ReturnType<typeof createCompactionPolicy>).check()
        : undefined,
      onStateRead: async () => {
        await registry.sync();
        if (initialiseIndexes) await migration?.preparePending();
      },
      afterFirstContact: initialiseIndexes
        ? () =>
            planStartup({
              matchers,
              replica: replica as Replica,
              jobs,
              policy: config.index.startupRebuild,
              logger,
            }).then(() => undefined)
        : undefined,
      logger,
    });
    if (startupDatabaseError === null) {
      await firstContact().catch((err) => logger.error({ err }, "could not seed the matcher flag"));
    }
    const ingest = createIngestService({
      repository,
      blobStore,
      // The active model as the registry names it (read at first contact); CLI imports are short-lived.
      embedder: models.active().embedder,
      batchSize: config.model.batchSize * 4,
      logger,
    });
    const sampleGallery = withSample ? await loadSampleGallery({ ...config.sample, ingest, logger }) : null;

    if (initialiseIndexes) {
      if (startupDatabaseError !== null) {
        await startFromLocalCache(matchers);
      } else {
        await replica.sync();
        await planStartup({ matchers, replica, jobs, policy: config.index.startupRebuild, logger });
        await replica.sync();
      }
    }
    replica.start();
    cleanups.push(() => (replica as Replica).close());
    if (initialiseIndexes && sampleGallery) {
      // The sample's first search must hit: serve only once the rebuild that takes it in is done.
      await jobs.whenIdle();
      await replica.sync();
    }

    const search = createSearchService({
      models,
      flag,
      repository,
      blobStore,
      imageLimits: limits,
      maxTopK: config.limits.maxTopK,
      presignExpirySeconds: config.storage.presignExpirySeconds,
      suggestionTopK: config.adaptation.suggestionTopK,
      queryExpansion: config.adaptation.queryExpansion,
      admission: {
        concurrency: config.limits.searchConcurrency,
        queueLimit: config.limits.searchQueueLimit,
        deadlineMs: config.limits.requestDeadlineMs,
      },
      logger,
    });
    const shadow = createShadowTraffic({
      share: config.models.shadowShare,
      candidate: () => {
        const active = models.active();
        // The newest registered model served here with every index ready.
        const order = registry.registered().map((m) => m.modelId);
        const ready = models
          .all()
          .filter(
            (r) =>
              r !== active &&
              [...r.matchers.values()].every((m) => IMAGE_TYPES.every((t) => m.state(t).ready)),
          )
          .sort((a, b) => order.indexOf(b.modelId) - order.indexOf(a.modelId));
        return ready[0] ?? null;
      },
      rankWith: search.rankWith,
      record: (row) => modelRepo.recordShadow(row),
      logger,
    });
    search.observe((req, answered) => shadow.offer(req, answered));
    cleanups.push(() => shadow.close());
    const gallery = createGalleryService({
      repository,
      blobStore,
      presignExpirySeconds: config.storage.presignExpirySeconds,
    });
    const editor = createGalleryEditor({
      edits,
      blobStore,
      models,
      applyChanges: () => (replica as Replica).syncGallery(),
      gallery,
      settings: {
        maxImages: config.gallery.addMaxImages,
        nearDuplicate: {
          similarity: config.gallery.nearDuplicateSimilarity,
          maxHashDistance: config.gallery.nearDuplicateHashDistance,
          candidates: DEFAULT_HASH_RULE.candidates,
        },
      },
      logger,
    });
    const admin = createAdminService({
      matchers,
      flag,
      jobs,
      replica,
      state: servingState,
      model: () => {
        const r = models.active();
        return {
          modelId: r.modelId,
          preset: r.config.name,
          dimension: r.dimension,
          inputSize: r.config.inputSize,
        };
      },
      checkDatabase: () => db.unreachableReason(DB_CHECK_TIMEOUT_MS),
    });
    migration = createModelMigrationService({
      config,
      repo: modelRepo,
      registry,
      runtimes: models,
      load: loadRuntime,
      jobs,
      replica,
      repository,
      logger,
    });
    const modelMigration = migration;
    /**
     * Images without a thumbnail (ingested before thumbnails existed, or the sample gallery's, which the
     * first start does not wait for) get theirs in the background once the server listens, so the backfill
     * does not compete with the start; the grid shows a placeholder until then.
     */
    const startThumbnailBackfill = () => {
      if (!initialiseIndexes || startupDatabaseError !== null) return;
      const stop = new AbortController();
      const running = backfillThumbnails({ repository, blobStore, logger, signal: stop.signal }).catch(
        (err) => logger.warn({ err }, "thumbnail backfill stopped"),
      );
      cleanups.push(async () => {
        stop.abort();
        await running;
      });
    };

    const readiness = (): Readiness => {
      const r = (replica as Replica).readiness();
      const want = registry.activeModelId();
      if (want && want !== models.active().modelId) {
        const problem = registry.problems().find((p) => p.modelId === want);
        return {
          ...r,
          ready: false,
          reasons: [
            ...r.reasons,
            `the deployment's active model ${want} is not loaded here${problem ? `: ${problem.reason}` : ""}`,
          ],
        };
      }
      return r;
    };

    return {
      config,
      logger,
      db,
      repository,
      blobStore,
      get embedder() {
        return models.active().embedder;
      },
      matchers,
      models,
      modelMigration,
      shadow,
      jobs,
      replica,
      search,
      admin,
      ingest,
      gallery,
      editor,
      metrics,
      startupDatabaseError,
      readiness,
      sampleGallery,
      async listen() {
        const graphql = await startGraphQLEndpoint({
          services: {
            search,
            admin,
            gallery,
            editor,
            models: modelMigration,
            parseSearchInput: createSearchInputParser({
              maxTopK: config.limits.maxTopK,
              maxPerGroup: MAX_PER_GROUP,
              maxImageBytes: config.limits.maxImageBytes,
            }),
            maxImageBytes: config.limits.maxImageBytes,
          },
          adminToken: config.adminToken,
          exposeStack: config.env === "development",
          introspection: config.env !== "production",
          limits: {
            maxSearches: config.limits.maxSearchesPerOperation,
            maxAliases: config.limits.maxAliases,
            maxDepth: config.limits.maxDepth,
          },
          observeSearch: metrics.observeSearch,
          logger,
        });
        cleanups.push(graphql.stop);
        const server = await startHttpServer({
          graphql,
          metrics,
          readiness,
          host: config.http.host,
          port: config.http.port,
          maxImageBytes: config.limits.maxImageBytes,
          maxUploadFiles: config.gallery.addMaxImages,
          graphiql: config.http.graphiql,
          imageOrigins: [new URL(config.storage.publicEndpoint ?? infra.s3.endpoint).origin],
          logger,
        });
        cleanups.push(server.stop);
        // While it serves, the event loop ahead of the worker threads; new threads are found as they
        // start. Not before: ingestion and a first start are work of the workers and the main thread
        // together, and lose 4-20 % when the main thread comes first (docs/benchmarks.md, sixth pass).
        const priority = lowerWorkerThreadPriority({ nice: config.workerThreadNice, logger });
        cleanups.push(async () => priority.stop());
        startThumbnailBackfill();
        return server;
      },
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
