import { timingSafeEqual } from "node:crypto";
import { errors } from "../shared/errors.js";
import type { GraphQLContext } from "./graphql.context.js";

/**
 * Classifies an `Authorization` header for admin operations.
 * With no ADMIN_TOKEN configured, admin operations are disabled, never open.
 */
export function checkAdminAccess(
  header: string | undefined,
  adminToken: string | undefined,
): GraphQLContext["adminAccess"] {
  if (!adminToken) return "disabled";
  const match = header?.match(/^Bearer\s+(.+)$/i);
  if (!match?.[1]) return "missing";
  const given = Buffer.from(match[1].trim());
  const expected = Buffer.from(adminToken);
  return given.length === expected.length && timingSafeEqual(given, expected) ? "granted" : "invalid";
}

/**
 * Throws unless the request may run admin operations.
 * @throws DomainError UNAUTHENTICATED (no bearer token), FORBIDDEN (wrong token, or admin disabled).
 */
export function requireAdmin(ctx: GraphQLContext): void {
  switch (ctx.adminAccess) {
    case "granted":
      return;
    case "missing":
      throw errors.unauthenticated(
        "This operation needs an admin token: send 'Authorization: Bearer <ADMIN_TOKEN>'.",
      );
    case "invalid":
      throw errors.forbidden("The admin token is not valid.");
    case "disabled":
      throw errors.forbidden("Admin operations are disabled on this server: set ADMIN_TOKEN to enable them.");
  }
}
