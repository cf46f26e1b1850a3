import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { fileURLToPath } from "node:url";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";
import type { Logger } from "pino";
import type { AdminService } from "../admin/admin.service.js";
import type { SearchService } from "../search/search.service.js";
import { checkAdminAccess } from "./admin.auth.js";
import type { GraphQLContext } from "./graphql.context.js";
import { createErrorFormatter } from "./graphql.errors.js";
import { resolvers } from "./resolvers.js";

/** The SDL the service implements (repo root `schema.graphql`). */
export const SCHEMA_PATH = fileURLToPath(new URL("../../schema.graphql", import.meta.url));

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
  logger,
}: {
  search: SearchService;
  admin: AdminService;
  adminToken: string | undefined;
  host: string;
  port: number;
  exposeStack: boolean;
  logger: Logger;
}): Promise<GraphQLHttpServer> {
  const server = new ApolloServer<GraphQLContext>({
    typeDefs: readFileSync(SCHEMA_PATH, "utf8"),
    resolvers,
    formatError: createErrorFormatter({ logger, exposeStack }),
    includeStacktraceInErrorResponses: exposeStack,
    introspection: true,
  });
  const { url } = await startStandaloneServer(server, {
    listen: { host, port },
    context: async ({ req }: { req: IncomingMessage }) => ({
      search,
      admin,
      adminAccess: checkAdminAccess(req.headers.authorization, adminToken),
    }),
  });
  return { url, stop: () => server.stop() };
}
