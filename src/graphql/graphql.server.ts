import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { fileURLToPath } from "node:url";
import { ApolloServer, type ApolloServerPlugin } from "@apollo/server";
import { unwrapResolverError } from "@apollo/server/errors";
import { startStandaloneServer } from "@apollo/server/standalone";
import type { Logger } from "pino";
import type { AdminService } from "../admin/admin.service.js";
import type { SearchService } from "../search/search.service.js";
import { DomainError } from "../shared/errors.js";
import { checkAdminAccess, createAdminGuard } from "./admin.auth.js";
import type { GraphQLContext } from "./graphql.context.js";
import { createErrorFormatter } from "./graphql.errors.js";
import { type OperationLimits, operationLimits } from "./operation-limits.js";
import { resolvers } from "./resolvers.js";

/** The SDL the service implements (repo root `schema.graphql`). */
export const SCHEMA_PATH = fileURLToPath(new URL("../../schema.graphql", import.meta.url));

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

/** A started GraphQL HTTP endpoint. */
export interface GraphQLHttpServer {
  /** e.g. `http://127.0.0.1:4000/` */
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * Starts Apollo Server over HTTP (POST JSON; CSRF prevention on, so browsers' simple requests are refused).
 * @param port - 0 picks a free port.
 */
export async function startGraphQLServer({
  search,
  admin,
  adminToken,
  host,
  port,
  exposeStack,
  introspection,
  limits,
  logger,
}: {
  search: SearchService;
  admin: AdminService;
  adminToken: string | undefined;
  host: string;
  port: number;
  exposeStack: boolean;
  /** Schema introspection (on in development, off in production by default). */
  introspection: boolean;
  limits: OperationLimits;
  logger: Logger;
}): Promise<GraphQLHttpServer> {
  const guards = operationLimits(limits);
  const adminGuard = createAdminGuard();
  const server = new ApolloServer<GraphQLContext>({
    typeDefs: readFileSync(SCHEMA_PATH, "utf8"),
    resolvers,
    formatError: createErrorFormatter({ logger, exposeStack }),
    includeStacktraceInErrorResponses: exposeStack,
    introspection,
    validationRules: guards.validationRules,
    parseOptions: guards.parseOptions,
    plugins: [...guards.plugins, overloadStatusPlugin],
  });
  const { url } = await startStandaloneServer(server, {
    listen: { host, port },
    context: async ({ req }: { req: IncomingMessage }) => ({
      search,
      admin,
      adminAccess: await adminGuard(
        checkAdminAccess(req.headers.authorization, adminToken),
        req.socket.remoteAddress ?? "unknown",
      ),
    }),
  });
  return { url, stop: () => server.stop() };
}
