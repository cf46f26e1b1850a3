import { parseArgs } from "node:util";
import { pino } from "pino";
import type { App } from "./app.js";
import { ConfigError, loadConfig } from "./config/config.js";
import { leaveSignalsToCaller } from "./db/embedded-postgres.js";
import { startInfrastructure } from "./startup/infrastructure.js";

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
// The database and object storage start first, and the rest of the service loads meanwhile: on a first
// start, embedded PostgreSQL's initdb (about 2 s) then overlaps the module loading (about 1.2 s).
const infrastructure = startInfrastructure(config, logger);
infrastructure.catch(() => {}); // createApp reports it
try {
  const [{ createApp }, { exampleQuery }] = await Promise.all([
    import("./app.js"),
    import("./graphql/example-query.js"),
  ]).catch(async (err) => {
    // A broken install: nothing owns the servers yet.
    await (await infrastructure.catch(() => undefined))?.stop();
    throw err;
  });
  const app = await createApp(config, logger, { loadSampleGallery: withSampleGallery, infrastructure });
  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    // A signal again during the shutdown is not a second request: Ctrl-C under `npm start` reaches this
    // process twice (from the terminal, to the process group, and forwarded by npm), and Node's default
    // for an unhandled SIGINT would end it halfway, with the embedded PostgreSQL left running.
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, "shutting down");
    await app.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  // Once shutting down, a library's stray rejection (pg-boss completing a job on a database that a Ctrl-C
  // has already stopped) must not end the process before app.close has stopped the rest in order.
  process.on("unhandledRejection", (err) => {
    if (!shuttingDown) throw err;
    logger.warn({ err }, "ignored during shutdown");
  });
  // From here this process stops the embedded PostgreSQL itself, last (app.close); before the server
  // listens, so that no signal a client could send once it is ready meets embedded-postgres's own hook.
  await leaveSignalsToCaller();
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
} catch (err) {
  logger.fatal({ err }, "startup failed");
  process.exit(1);
}

/** One line on the sample gallery, for the startup banner. */
function sampleLine(sample: App["sampleGallery"]): string[] {
  if (!sample) return [];
  const { imported, skipped } = sample.summary;
  return [
    `Sample gallery: ${sample.images} images (imported ${imported} now, ${skipped} already there), indexed.`,
  ];
}
