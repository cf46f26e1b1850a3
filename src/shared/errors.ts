/**
 * Domain errors with stable codes. They know nothing of GraphQL; `src/graphql/graphql.errors.ts` maps
 * them to `GraphQLError` with `extensions.code`.
 */
export type DomainErrorCode =
  | "IMAGE_TOO_LARGE"
  | "IMAGE_TOO_SMALL"
  | "INVALID_IMAGE_FORMAT"
  | "FEATURE_EXTRACTION_FAILED"
  | "INDEX_NOT_READY"
  | "BAD_USER_INPUT"
  | "NOT_FOUND"
  | "REBUILD_IN_PROGRESS"
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "OVERLOADED"
  | "SERVICE_UNAVAILABLE"
  | "DUPLICATE_IMAGE"
  | "NEAR_DUPLICATE"
  | "MODEL_NOT_READY";

/** An error a caller can act on; `message` is written for a person. */
export class DomainError extends Error {
  constructor(
    readonly code: DomainErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "DomainError";
  }
}

/** Factories, so call sites read as sentences and codes stay in one place. */
export const errors = {
  imageTooLarge: (message: string, details: Record<string, unknown> = {}) =>
    new DomainError("IMAGE_TOO_LARGE", message, details),
  imageTooSmall: (message: string) => new DomainError("IMAGE_TOO_SMALL", message),
  invalidImage: (message: string, cause?: unknown) =>
    new DomainError("INVALID_IMAGE_FORMAT", message, {}, { cause }),
  featureExtractionFailed: (message: string, cause?: unknown) =>
    new DomainError("FEATURE_EXTRACTION_FAILED", message, {}, { cause }),
  indexNotReady: (message: string, details: Record<string, unknown> = {}) =>
    new DomainError("INDEX_NOT_READY", message, details),
  badInput: (message: string, details: Record<string, unknown> = {}) =>
    new DomainError("BAD_USER_INPUT", message, details),
  notFound: (message: string, details: Record<string, unknown> = {}) =>
    new DomainError("NOT_FOUND", message, details),
  rebuildInProgress: (taskId: string) =>
    new DomainError(
      "REBUILD_IN_PROGRESS",
      `A rebuild is already running (task ${taskId}); poll it with status or rebuildTask(id) and retry when it finishes.`,
      { taskId },
    ),
  unauthenticated: (message: string) => new DomainError("UNAUTHENTICATED", message),
  forbidden: (message: string) => new DomainError("FORBIDDEN", message),
  serviceUnavailable: (message: string, cause?: unknown) =>
    new DomainError("SERVICE_UNAVAILABLE", message, {}, { cause }),
  duplicateImage: (message: string, details: Record<string, unknown> = {}) =>
    new DomainError("DUPLICATE_IMAGE", message, details),
  /** A model cannot be promoted yet: its indexes are not built or not served, or images lack its embedding. */
  modelNotReady: (message: string, details: Record<string, unknown> = {}) =>
    new DomainError("MODEL_NOT_READY", message, details),
  nearDuplicate: (message: string, details: Record<string, unknown> = {}) =>
    new DomainError("NEAR_DUPLICATE", message, details),
  overloaded: (message: string, retryAfterSeconds: number) =>
    new DomainError("OVERLOADED", message, { retryAfterSeconds }),
};

/** True when `e` is a {@link DomainError}. */
export function isDomainError(e: unknown): e is DomainError {
  return e instanceof DomainError;
}

/**
 * Runs a database read or write of an operator's call: a DomainError passes through, any other failure
 * (the database down or timing out) becomes SERVICE_UNAVAILABLE, saying `what` did not happen.
 */
export async function databaseCall<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (isDomainError(err)) throw err;
    throw errors.serviceUnavailable(
      `${what}: the database does not answer (${(err as Error).message}). Searches go on with the indexes each replica serves; retry when it is back.`,
      err,
    );
  }
}
