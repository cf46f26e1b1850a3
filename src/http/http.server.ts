import { createReadStream } from "node:fs";
import { fileURLToPath } from "node:url";
import { fastifyApolloHandler } from "@as-integrations/fastify";
import helmet from "@fastify/helmet";
import fastifyStatic from "@fastify/static";
import Fastify, { type FastifyRequest, LogController } from "fastify";
import type { Logger } from "pino";
import type { GraphQLEndpoint } from "../graphql/graphql.server.js";
import type { Metrics } from "../observability/metrics.js";
import { MultipartRequestError, readGraphQLMultipart } from "./multipart-request.js";
import { vendorAssets } from "./vendor-assets.js";

/**
 * Where the inspector's web app (static files) lives. Resolved through the repository root so that the
 * same path holds from `src/http/` (TypeScript sources) and from `dist/http/` (the compiled build).
 */
const WEB_ROOT = fileURLToPath(new URL("../../src/web/public/", import.meta.url));

/** A started HTTP server. */
export interface HttpServer {
  /** e.g. `http://127.0.0.1:4000/` */
  readonly url: string;
  /** `url` + `graphql` */
  readonly graphqlUrl: string;
  stop(): Promise<void>;
}

/** Whether the service can take searches, and if not, why. */
export interface Readiness {
  ready: boolean;
  /** Empty when ready. */
  reasons: string[];
  detail: Record<string, unknown>;
}

/** Options of {@link startHttpServer}. */
export interface HttpServerOptions {
  graphql: GraphQLEndpoint;
  metrics: Metrics;
  readiness: () => Readiness;
  host: string;
  port: number;
  /** Largest query image (bytes): the multipart file limit, and with base64's 4/3 the JSON body limit. */
  maxImageBytes: number;
  /** Files one multipart request may carry (default 1). */
  maxUploadFiles?: number | undefined;
  /** Serve GraphiQL at `/graphiql` (on in development, off in production by default). */
  graphiql: boolean;
  /** Origins the page may load images from besides itself: the object store that presigned URLs name. */
  imageOrigins: readonly string[];
  logger: Logger;
}

/** Headers that make a multipart request non-simple, so browsers preflight it (Apollo's CSRF rule). */
const PREFLIGHT_HEADERS = ["apollo-require-preflight", "x-apollo-operation-name"];

/** Room for the GraphQL document and variables around the image, in a JSON body (bytes). */
const JSON_OVERHEAD_BYTES = 256 * 1024;

/** The parts of a Fastify reply {@link sendGraphQLError} uses, whatever the route's reply type. */
interface ReplyLike<R> {
  code(statusCode: number): R;
  type(contentType: string): R;
  send(payload: string): R;
}

/**
 * Answers with a GraphQL-shaped error body, so GraphQL clients read refusals made before Apollo (body
 * limits, CSRF, malformed multipart) the way they read Apollo's own.
 */
function sendGraphQLError<R extends ReplyLike<R>>(
  reply: R,
  status: number,
  message: string,
  code: string,
  extra: Record<string, unknown> = {},
): R {
  return reply
    .code(status)
    .type("application/json")
    .send(JSON.stringify({ errors: [{ message, extensions: { code, ...extra } }] }));
}

/**
 * The service's HTTP server, on Fastify 5 with Apollo's official integration (@as-integrations/fastify):
 * - `POST /graphql` (and `GET` for queries); `POST /` still answers GraphQL for clients of the
 *   standalone server, which served at `/`.
 * - GraphQL multipart requests (file uploads, read in memory by `multipart-request.ts`) on both.
 * - `/healthz`, `/readyz`, `/metrics` (Prometheus), `/graphiql` when enabled, and the web app at `/`.
 * Fastify was chosen over Express 5 for its schema-less fast JSON path, its built-in body limit and
 * content-type parsers, and pino as its native logger (one logger for the whole service).
 */
export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const { graphql, metrics, logger } = opts;
  const bodyLimit = Math.ceil((opts.maxImageBytes * 4) / 3) + JSON_OVERHEAD_BYTES;
  const app = Fastify({
    loggerInstance: logger,
    // A line per request would drown the service's own logs; /metrics counts requests instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    return503OnClosing: true,
  });

  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        imgSrc: ["'self'", "data:", "blob:", ...opts.imageOrigins],
        scriptSrc: ["'self'"],
        // GraphiQL's editor sets style attributes from script.
        styleSrc: ["'self'", "'unsafe-inline'"],
        connectSrc: ["'self'"],
        frameAncestors: ["'none'"],
        formAction: ["'self'"],
        upgradeInsecureRequests: null,
      },
    },
    // Presigned image URLs point at another origin; the page must be allowed to load them.
    crossOriginEmbedderPolicy: false,
    crossOriginResourcePolicy: { policy: "same-origin" },
    referrerPolicy: { policy: "no-referrer" },
  });

  app.addHook("onResponse", async (request, reply) => {
    metrics.observeHttp(
      request.method,
      request.routeOptions.url ?? "unmatched",
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });

  app.setErrorHandler(async (error: Error & { statusCode?: number; code?: string }, request, reply) => {
    const status = error.statusCode ?? 500;
    if (status >= 500) request.log.error({ err: error }, "request failed");
    if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE")
      return sendGraphQLError(
        reply,
        413,
        `The request body is over the limit of ${bodyLimit} bytes. Send the image as a multipart upload, or a smaller image.`,
        "IMAGE_TOO_LARGE",
        { maxBytes: bodyLimit },
      );
    if (status < 500)
      return sendGraphQLError(reply, status, error.message, "BAD_REQUEST", { httpStatus: status });
    return sendGraphQLError(reply, 500, "Internal server error.", "INTERNAL_SERVER_ERROR");
  });

  // GraphQL multipart requests: Fastify leaves the body stream alone, it is read in preValidation,
  // after the CSRF check, so a refused request is never read.
  app.addContentTypeParser("multipart/form-data", (_request, _payload, done) => done(null));
  const handler = fastifyApolloHandler(graphql.apollo, {
    context: (request: FastifyRequest) => graphql.context(request.headers.authorization, request.ip),
  });
  const graphqlRoute = (url: string, method: ("GET" | "POST" | "OPTIONS")[]) =>
    app.route({
      url,
      method,
      handler,
      preValidation: async (request, reply) => {
        if (!request.headers["content-type"]?.startsWith("multipart/form-data")) return;
        if (!PREFLIGHT_HEADERS.some((h) => request.headers[h])) {
          return sendGraphQLError(
            reply,
            400,
            "This multipart request has been blocked as a potential Cross-Site Request Forgery (CSRF). Send it with the header 'Apollo-Require-Preflight: true'.",
            "BAD_REQUEST",
          );
        }
        try {
          request.body = await readGraphQLMultipart(request.raw, {
            maxFileSize: opts.maxImageBytes,
            // A search carries one file; addGalleryImages up to GALLERY_ADD_MAX_IMAGES.
            maxFiles: opts.maxUploadFiles ?? 1,
            maxFieldSize: JSON_OVERHEAD_BYTES,
          });
        } catch (e) {
          if (!(e instanceof MultipartRequestError)) throw e;
          const err = e;
          return sendGraphQLError(
            reply,
            err.status,
            `Invalid multipart request: ${err.message}`,
            err.status === 413 ? "IMAGE_TOO_LARGE" : "BAD_USER_INPUT",
          );
        }
      },
    });
  graphqlRoute("/graphql", ["GET", "POST", "OPTIONS"]);
  graphqlRoute("/", ["POST", "OPTIONS"]);

  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    const r = opts.readiness();
    return reply
      .code(r.ready ? 200 : 503)
      .send({ status: r.ready ? "ready" : "not ready", reasons: r.reasons, ...r.detail });
  });
  app.get("/metrics", async (_request, reply) => {
    const { contentType, body } = await metrics.exposition();
    return reply.type(contentType).send(body);
  });

  if (opts.graphiql) {
    const assets = vendorAssets();
    app.get<{ Params: { file: string } }>("/vendor/:file", async (request, reply) => {
      const asset = assets.get(request.params.file);
      if (!asset) return reply.code(404).send({ error: "not found" });
      return reply
        .type(asset.contentType)
        .header("cache-control", "public, max-age=86400")
        .send(createReadStream(asset.file));
    });
    app.get("/graphiql", (_request, reply) => reply.sendFile("graphiql.html"));
  }
  await app.register(fastifyStatic, { root: WEB_ROOT, prefix: "/", index: ["index.html"] });

  const address = await app.listen({ host: opts.host, port: opts.port });
  const url = `${address.replace("[::1]", "localhost")}/`;
  // Fastify's close waits for requests in flight, so Apollo stops after the last one is answered.
  return { url, graphqlUrl: `${url}graphql`, stop: () => app.close() };
}
