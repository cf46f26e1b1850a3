import { readFileSync } from "node:fs";
import { ApolloServer, type ApolloServerPlugin } from "@apollo/server";
import { unwrapResolverError } from "@apollo/server/errors";
import { ApolloServerPluginCacheControlDisabled } from "@apollo/server/plugin/disabled";
import GraphQLUpload from "graphql-upload/GraphQLUpload.mjs";
import type { Logger } from "pino";
import { DomainError } from "../shared/errors.js";
import { sha256 } from "../shared/hash.js";
import { checkAdminAccess, createAdminGuard } from "./admin.auth.js";
import type { GraphQLContext } from "./graphql.context.js";
import { createErrorFormatter } from "./graphql.errors.js";
import { type OperationLimits, operationLimits } from "./operation-limits.js";
import { resolvers } from "./resolvers.js";
import { type SearchOutcome, withSearchMetrics } from "./search-metrics.js";

/** The SDL the service implements (repo root `schema.graphql`). */
export const SCHEMA_PATH = new URL("../../schema.graphql", import.meta.url);

/**
 * A response whose errors include OVERLOADED gets HTTP 503 and `Retry-After`, so load balancers and HTTP
 * clients back off as they would for any overloaded server (RFC 9110, section 15.6.4).
 */
const overloadStatusPlugin: ApolloServerPlugin<GraphQLContext> = {
  async requestDidStart() {
    return {
      async willSendResponse({ response, errors }) {
        const overloaded = errors?.find(
          (e) =>
            unwrapResolverError(e) instanceof DomainError &&
            (unwrapResolverError(e) as DomainError).code === "OVERLOADED",
        );
        if (!overloaded) return;
        const retryAfter = (unwrapResolverError(overloaded) as DomainError).details.retryAfterSeconds;
        response.http.status = 503;
        response.http.headers.set("retry-after", String(retryAfter ?? 1));
      },
    };
  },
};

/**
 * Every GraphQL response is `Cache-Control: no-store`, as Apollo's cache-control plugin (disabled, below) set
 * it: answers carry presigned URLs and per-user results, and `/graphql` also answers GET.
 */
const noStorePlugin: ApolloServerPlugin<GraphQLContext> = {
  async requestDidStart() {
    return {
      async willSendResponse({ response }) {
        if (!response.http.headers.has("cache-control"))
          response.http.headers.set("cache-control", "no-store");
      },
    };
  },
};

/** A started Apollo Server and how to build each request's context. */
export interface GraphQLEndpoint {
  readonly apollo: ApolloServer<GraphQLContext>;
  /**
   * The context of one request.
   * @param authorization - the request's `Authorization` header.
   * @param address - the client's address (admin-token throttling).
   */
  context(authorization: string | undefined, address: string): Promise<GraphQLContext>;
  stop(): Promise<void>;
}

/**
 * Builds and starts Apollo Server for the SDL in {@link SCHEMA_PATH}, with the operation limits, the error
 * formatter and CSRF prevention (Apollo's default: simple requests, multipart included, need a preflight
 * header). The HTTP framework mounts it.
 */
export async function startGraphQLEndpoint({
  services,
  adminToken,
  exposeStack,
  introspection,
  limits,
  observeSearch = () => {},
  logger,
}: {
  services: Omit<GraphQLContext, "adminAccess" | "adminTokenId">;
  adminToken: string | undefined;
  exposeStack: boolean;
  /** Schema introspection (on in development, off in production by default). */
  introspection: boolean;
  limits: OperationLimits;
  /** Told how each searchSimilar field ended (the search metrics); must return at once. */
  observeSearch?: (outcome: SearchOutcome) => void;
  logger: Logger;
}): Promise<GraphQLEndpoint> {
  const guards = operationLimits(limits);
  const adminGuard = createAdminGuard();
  // Recorded with admin changes (the flag's history): names the credential without revealing it.
  const adminTokenId = adminToken ? sha256(adminToken).slice(0, 12) : null;
  const apollo = new ApolloServer<GraphQLContext>({
    typeDefs: readFileSync(SCHEMA_PATH, "utf8"),
    resolvers: { ...withSearchMetrics(resolvers, observeSearch), Upload: GraphQLUpload },
    // main.ts drains and closes everything on SIGTERM; Apollo's own handler would re-raise the signal first.
    stopOnTerminationSignals: false,
    formatError: createErrorFormatter({ logger, exposeStack }),
    includeStacktraceInErrorResponses: exposeStack,
    introspection,
    validationRules: guards.validationRules,
    parseOptions: guards.parseOptions,
    // No plugin resolves per field (willResolveField): Apollo then leaves the fields uninstrumented. Cache
    // control, on by default, is such a plugin; nothing here sets cache hints, and its one effect, the
    // no-store header, is noStorePlugin's.
    plugins: [
      ...guards.plugins,
      overloadStatusPlugin,
      noStorePlugin,
      ApolloServerPluginCacheControlDisabled(),
    ],
  });
  await apollo.start();
  return {
    apollo,
    context: async (authorization, address) => ({
      ...services,
      adminAccess: await adminGuard(checkAdminAccess(authorization, adminToken), address),
      adminTokenId,
    }),
    stop: () => apollo.stop(),
  };
}
