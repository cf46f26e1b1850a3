import type { AdminService } from "../admin/admin.service.js";
import type { GalleryService } from "../gallery/gallery.service.js";
import type { GalleryEditor } from "../gallery/gallery-editor.service.js";
import type { ModelMigrationService } from "../models/model-migration.service.js";
import type { SearchService } from "../search/search.service.js";
import type { SearchInputParser } from "./search-input.js";

/** Per-request context handed to resolvers. */
export interface GraphQLContext {
  search: SearchService;
  admin: AdminService;
  gallery: GalleryService;
  editor: GalleryEditor;
  /** Embedding models: register, compare, promote, roll back, retire. */
  models: ModelMigrationService;
  /** searchSimilar's input to the search service's request, refusing bad input at once. */
  parseSearchInput: SearchInputParser;
  /** Largest image accepted (bytes); gallery uploads are cut off past it. */
  maxImageBytes: number;
  /** Result of checking the request's `Authorization` header against ADMIN_TOKEN. */
  adminAccess: "granted" | "missing" | "invalid" | "disabled" | "throttled";
  /** First 12 hex digits of ADMIN_TOKEN's sha256 (who made an admin change), or null when unset. */
  adminTokenId: string | null;
}
