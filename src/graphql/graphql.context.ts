import type { AdminService } from "../admin/admin.service.js";
import type { SearchService } from "../search/search.service.js";

/** Per-request context handed to resolvers. */
export interface GraphQLContext {
  search: SearchService;
  admin: AdminService;
  /** Result of checking the request's `Authorization` header against ADMIN_TOKEN. */
  adminAccess: "granted" | "missing" | "invalid" | "disabled" | "throttled";
}
