import { z } from "zod";
import { ConfigError, envSchema } from "./config.js";

/**
 * What `npm run search` reads from the environment: the service's own HOST and PORT (the same variables and
 * defaults as the server's, so a CLI started beside `npm start` finds it), or DEFECT_LENS_URL to point at
 * another service.
 */
const searchClientEnvSchema = envSchema.pick({ HOST: true, PORT: true }).extend({
  DEFECT_LENS_URL: z
    .url({ protocol: /^https?$/ })
    .optional()
    .describe("GraphQL endpoint `npm run search` calls (default http://HOST:PORT/graphql)."),
});

/** Bind-all addresses are not addresses a client can call; the service is on this machine then. */
const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]", ""]);

/**
 * The GraphQL endpoint the search CLI calls when `--url` is not given.
 * @param source - variables to read (normally `process.env`).
 * @returns an absolute http(s) URL: DEFECT_LENS_URL as is, else `http://HOST:PORT/graphql` (a wildcard HOST
 *   becomes 127.0.0.1).
 * @throws {ConfigError} when DEFECT_LENS_URL is not an http(s) URL, HOST/PORT are invalid, or PORT is 0 (any
 *   free port: the client cannot know which) without DEFECT_LENS_URL.
 */
export function defaultGraphqlUrl(source: Record<string, string | undefined> = process.env): string {
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = searchClientEnvSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`));
  }
  const env = parsed.data;
  if (env.DEFECT_LENS_URL) return env.DEFECT_LENS_URL;
  if (env.PORT === 0) {
    throw new ConfigError(["PORT is 0 (any free port): give --url or DEFECT_LENS_URL"]);
  }
  const host = WILDCARD_HOSTS.has(env.HOST)
    ? "127.0.0.1"
    : env.HOST.includes(":")
      ? `[${env.HOST}]`
      : env.HOST;
  return `http://${host}:${env.PORT}/graphql`;
}

/**
 * The admin token the `models` CLI sends when `--token` is not given: ADMIN_TOKEN, as the server reads it.
 * @param source - variables to read (normally `process.env`).
 */
export function adminTokenFromEnv(
  source: Record<string, string | undefined> = process.env,
): string | undefined {
  return source.ADMIN_TOKEN || undefined;
}
