import type { Logger } from "pino";
import { errors, isDomainError } from "../shared/errors.js";

/**
 * Runs one step of a search's fetch stage (PostgreSQL, object storage): an outage or a timeout there is
 * SERVICE_UNAVAILABLE, which a client may retry, rather than an internal error. Domain errors pass as
 * they are.
 * @throws DomainError SERVICE_UNAVAILABLE when `run` fails with anything but a domain error.
 */
export async function fetchStage<T>(logger: Logger, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (isDomainError(e)) throw e;
    logger.warn({ err: e }, "query image fetch failed");
    throw errors.serviceUnavailable(
      "The database or object storage did not answer in time; retry shortly, or send the image as base64.",
      e,
    );
  }
}
