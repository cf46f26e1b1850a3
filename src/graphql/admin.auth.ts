import { timingSafeEqual } from "node:crypto";
import { RateLimiterMemory } from "rate-limiter-flexible";
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

/** Wrong admin tokens allowed per client address per window, before every admin call is refused. */
export const ADMIN_FAILURES_ALLOWED = 10;
export const ADMIN_FAILURE_WINDOW_SECONDS = 60;

/**
 * Counts wrong admin tokens per client address (rate-limiter-flexible, in memory): after
 * {@link ADMIN_FAILURES_ALLOWED} in {@link ADMIN_FAILURE_WINDOW_SECONDS}, that address is "throttled" even
 * with the right token, so guessing costs a minute per ten guesses instead of a millisecond.
 */
export function createAdminGuard() {
  const failures = new RateLimiterMemory({
    points: ADMIN_FAILURES_ALLOWED,
    duration: ADMIN_FAILURE_WINDOW_SECONDS,
  });
  return async (
    access: GraphQLContext["adminAccess"],
    client: string,
  ): Promise<GraphQLContext["adminAccess"]> => {
    if (access === "missing" || access === "disabled") return access;
    const state = await failures.get(client);
    if (state && state.consumedPoints >= ADMIN_FAILURES_ALLOWED) return "throttled";
    if (access === "invalid") await failures.consume(client).catch(() => undefined);
    return access;
  };
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
    case "throttled":
      throw errors.forbidden(
        `Too many wrong admin tokens from this address; wait ${ADMIN_FAILURE_WINDOW_SECONDS} s and retry with the right one.`,
      );
    case "disabled":
      throw errors.forbidden("Admin operations are disabled on this server: set ADMIN_TOKEN to enable them.");
  }
}
