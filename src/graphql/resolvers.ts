import path from "node:path";
import { errors } from "../shared/errors.js";
import { requireAdmin } from "./admin.auth.js";
import type { Resolvers } from "./generated/resolvers-types.js";
import type { GraphQLContext } from "./graphql.context.js";
import { parseId } from "./ids.js";
import { readUpload } from "./upload.js";

const isAdmin = (ctx: GraphQLContext) => ctx.adminAccess === "granted";
/** Which admin credential made a change, without the secret: its sha256's first 12 hex digits. */
const adminCredential = (ctx: GraphQLContext) => `admin-token:${ctx.adminTokenId ?? "unknown"}`;
const REDACTED = "unavailable (details are shown with the admin token)";

/** Thin resolvers: convert arguments, call one service method, map the result. */
export const resolvers: Resolvers = {
  ImageType: { DEFECT: "defect", NORMAL: "normal" },
  ImageTypeSelector: { DEFECT: "defect", NORMAL: "normal", ALL: "all" },
  MatcherVersion: { V1: "v1", V2: "v2" },
  IndexSource: { BUILT: "built", LOADED: "loaded", DOWNLOADED: "downloaded", FALLBACK: "fallback" },
  EmbeddingSpace: { RAW: "raw", ADAPTED: "adapted" },
  SearchGroupBy: { DEFECT_TYPE: "defectType" },
  RebuildStatus: { QUEUED: "queued", RUNNING: "running", SUCCEEDED: "succeeded", FAILED: "failed" },
  ModelState: { ACTIVE: "active", CANDIDATE: "candidate", RETIRED: "retired" },

  Query: {
    // Parsed before the search is admitted: bad input never waits for a search slot.
    searchSimilar: async (_, { input }, ctx) => ctx.search.search(await ctx.parseSearchInput(input)),
    status: (_, __, ctx) => ctx.admin.status(),
    rebuildTask: async (_, { id }, ctx) => (await ctx.admin.task(String(id))) ?? null,
    products: (_, __, ctx) => ctx.gallery.products(),
    defectTypes: (_, __, ctx) => ctx.gallery.defectTypes(),
    galleryImages: async (_, { filter, first, after }, ctx) => {
      const page = await ctx.gallery.page(
        { productCode: filter?.productCode, defectCode: filter?.defectCode, imageType: filter?.imageType },
        first ?? 24,
        after === null || after === undefined ? 0 : parseId(after, "after"),
      );
      return { ...page, nextCursor: page.nextCursor === null ? null : String(page.nextCursor) };
    },
    nearDuplicates: (_, { first }, ctx) => ctx.editor.nearDuplicates(first ?? 50),
    models: (_, __, ctx) => {
      requireAdmin(ctx);
      return ctx.models.list();
    },
    compareModels: (_, { candidateModelId }, ctx) => {
      requireAdmin(ctx);
      return ctx.models.compare(candidateModelId);
    },
  },

  Mutation: {
    rebuildIndex: (_, { imageType, version }, ctx) => {
      requireAdmin(ctx);
      return ctx.admin.rebuild(imageType, version, adminCredential(ctx));
    },
    setMatcherVersion: async (_, { version, reason }, ctx) => {
      requireAdmin(ctx);
      await ctx.admin.setActiveVersion(version, reason, adminCredential(ctx));
      return ctx.admin.status();
    },
    activateIndexVersion: (_, { id, reason }, ctx) => {
      requireAdmin(ctx);
      return ctx.admin.activateIndexVersion(String(id), reason, adminCredential(ctx));
    },
    addGalleryImages: async (_, { images, skipNearDuplicates }, ctx) => {
      requireAdmin(ctx);
      // Each upload is read on its own: one too large or cut off is refused alone.
      const items = await Promise.all(
        images.map(async (i) => ({
          bytes: await readUpload(i.file, ctx.maxImageBytes).catch((e: Error) => e),
          productCode: i.productCode,
          defectCode: i.defectCode,
          productName: i.productName,
          defectName: i.defectName,
        })),
      );
      const out = await ctx.editor.add(items, {
        skipNearDuplicates: skipNearDuplicates ?? false,
        changedBy: adminCredential(ctx),
      });
      return {
        ...out,
        nearDuplicates: out.nearDuplicates.map((n) => ({
          ...n,
          imageId: n.imageId === null ? null : String(n.imageId),
          neighbourImageId: String(n.neighbourImageId),
        })),
      };
    },
    relabelGalleryImage: (_, { imageId, productCode, defectCode }, ctx) => {
      requireAdmin(ctx);
      return ctx.editor.relabel(
        parseId(imageId, "imageId"),
        { productCode, defectCode },
        adminCredential(ctx),
      );
    },
    removeGalleryImage: (_, { imageId }, ctx) => {
      requireAdmin(ctx);
      return ctx.editor.remove(parseId(imageId, "imageId"), adminCredential(ctx));
    },
    keepNearDuplicate: (_, { imageId }, ctx) => {
      requireAdmin(ctx);
      return ctx.editor.keepNearDuplicate(parseId(imageId, "imageId"));
    },
    registerModel: (_, { input }, ctx) => {
      requireAdmin(ctx);
      const mode = input.resizeMode ?? undefined;
      if (mode !== undefined && mode !== "crop" && mode !== "fill" && mode !== "pad")
        throw errors.badInput(`resizeMode is crop, fill or pad; got '${String(mode).slice(0, 20)}'.`);
      return ctx.models.register(
        { preset: input.preset, path: input.path, sha256: input.sha256, resizeMode: mode },
        adminCredential(ctx),
      );
    },
    promoteModel: (_, { modelId, reason }, ctx) => {
      requireAdmin(ctx);
      return ctx.models.promote(modelId, reason, adminCredential(ctx));
    },
    rollbackModel: (_, { reason }, ctx) => {
      requireAdmin(ctx);
      return ctx.models.rollback(reason, adminCredential(ctx));
    },
    retireModel: async (_, { modelId }, ctx) => {
      requireAdmin(ctx);
      await ctx.models.retire(modelId, adminCredential(ctx));
      return true;
    },
  },

  ModelSwitch: {
    modelId: (s) => s.change.modelId,
    previousModelId: (s) => s.change.previousModelId,
    reason: (s) => s.change.reason,
    setBy: (s) => s.change.setBy,
    setAt: (s) => s.change.setAt,
    tookMs: (s) => s.ms,
  },

  SearchResult: {
    tookMs: (r) => r.timing.totalMs,
  },
  SearchHit: {
    imageId: (h) => (h.imageId === null ? null : String(h.imageId)),
    downloadUrl: (h, _, ctx) => ctx.search.downloadUrl(h),
    thumbnailUrl: (h, _, ctx) => ctx.search.thumbnailUrl(h),
    // Server paths are for operators; everyone else gets the file name.
    filePath: (h, _, ctx) => (h.filePath === null || isAdmin(ctx) ? h.filePath : path.basename(h.filePath)),
  },
  ProductSummary: {
    productCode: (p) => p.code,
    productName: (p) => p.name,
  },
  DefectTypeSummary: {
    defectCode: (d) => d.code,
    defectName: (d) => d.name,
  },
  GalleryImage: {
    imageId: (i) => String(i.imageId),
  },
  IndexStatus: {
    checksum: (s) => s.indexSha256,
    indexVersion: (s) => s.indexVersionId,
    activeIndexVersion: (s) => s.activeIndexVersionId,
    gallery: (s, _, ctx) => (isAdmin(ctx) ? s.gallery : s.gallery.replace(/^folder .*/, "folder")),
  },
  ServiceStatus: {
    // Hosts, SQL and paths in infrastructure errors are for operators only.
    databaseError: (s, _, ctx) => (s.databaseError === null || isAdmin(ctx) ? s.databaseError : REDACTED),
  },
  IndexVersion: {
    id: (v) => v.indexVersionId,
    checksum: (v) => v.indexSha256,
  },
  Replica: {
    id: (r) => r.replicaId,
  },
  ServedIndex: {
    indexVersion: (s) => s.indexVersionId,
  },
  RebuildResult: {
    indexVersion: (r) => r.indexVersionId ?? null,
  },
  RebuildTask: {
    trigger: (t) => t.trigger.toUpperCase(),
    error: (t, _, ctx) =>
      t.error === null || t.error === undefined || isAdmin(ctx) ? (t.error ?? null) : REDACTED,
  },
};
