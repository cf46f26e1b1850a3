import { parseArgs } from "node:util";
import { pino } from "pino";
import { createApp } from "./app.js";
import { ConfigError, loadConfig } from "./config/config.js";
import { exampleQuery } from "./graphql/example-query.js";

let config: ReturnType<typeof loadConfig>;
let withSampleGallery: boolean;
try {
  // `npm start -- --with-sample-gallery`: import samples/xsdd/gallery first (idempotent), then serve it.
  withSampleGallery = parseArgs({ options: { "with-sample-gallery": { type: "boolean", default: false } } })
    .values["with-sample-gallery"];
  config = loadConfig();
} catch (e) {
  // A bad flag (parseArgs) or bad environment (ConfigError): the message says it all.
  const usage = e instanceof ConfigError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
  console.error(usage ? (e as Error).message : e);
  process.exit(1);
}
const logger = pino({ level: config.logLevel });
try {
  const app = await createApp(config, logger, { loadSampleGallery: withSampleGallery });
  const server = await app.listen();
  logger.info({ url: server.url, activeVersion: config.matcher.initialVersion }, "defect-lens ready");
  process.stdout.write(
    [
      "",
      `defect-lens web app:        ${server.url}`,
      `GraphQL endpoint:           ${server.graphqlUrl}`,
      ...(config.http.graphiql ? [`GraphiQL (offline IDE):     ${server.url}graphiql`] : []),
      `Health, readiness, metrics: ${server.url}healthz ${server.url}readyz ${server.url}metrics`,
      ...sampleLine(app.sampleGallery),
      "",
      "Try:",
      exampleQuery(server.graphqlUrl, app.sampleGallery?.exampleQueryImage),
      "",
      "",
    ].join("\n"),
  );
  const shutdown = async (signal: string) => {
    logger.info({ signal }, "shutting down");
    await app.close();
    process.exit(0);
  };
  process.once("SIGINT", () => void shutdown("SIGINT"));
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
} catch (err) {
  logger.fatal({ err }, "startup failed");
  process.exit(1);
}

/** One line on the sample gallery, for the startup banner. */
function sampleLine(sample: Awaited<ReturnType<typeof createApp>>["sampleGallery"]): string[] {
  if (!sample) return [];
  const { imported, skipped } = sample.summary;
  return [
    `Sample gallery: ${sample.images} images (imported ${imported} now, ${skipped} already there), indexed.`,
  ];
}
