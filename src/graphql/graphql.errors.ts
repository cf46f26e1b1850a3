import { unwrapResolverError } from "@apollo/server/errors";
import type { GraphQLFormattedError } from "graphql";
import type { Logger } from "pino";
import { isDomainError } from "../shared/errors.js";

/**
 * Builds Apollo's `formatError`: domain errors keep their message and get their stable code on
 * `extensions.code`; GraphQL's own errors (validation, coercion) pass through; anything else is
 * logged with its cause and masked as INTERNAL_SERVER_ERROR.
 */
export function createErrorFormatter({ logger, exposeStack }: { logger: Logger; exposeStack: boolean }) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    if (isDomainError(original)) {
      return {
        message: original.message,
        ...(formatted.locations ? { locations: formatted.locations } : {}),
        ...(formatted.path ? { path: formatted.path } : {}),
        extensions: { ...original.details, code: original.code },
      };
    }
    // Apollo's own refusals (parse, validation, bad variables) carry their code. Checked by code rather than
    // `instanceof GraphQLError`: graphql's CommonJS and ESM builds can both be loaded (dual package).
    const code = formatted.extensions?.code;
    if (typeof code === "string" && code !== "INTERNAL_SERVER_ERROR" && original instanceof Error)
      return formatted;
    logger.error({ err: original, path: formatted.path }, "internal error");
    return {
      message: "Internal server error. It has been logged; retry later or contact the operator.",
      ...(formatted.path ? { path: formatted.path } : {}),
      extensions: {
        code: "INTERNAL_SERVER_ERROR",
        ...(exposeStack && original instanceof Error ? { stacktrace: original.stack?.split("\n") } : {}),
      },
    };
  };
}
