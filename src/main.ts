import { pino } from "pino";
import { createApp } from "./app.js";
import { ConfigError, loadConfig } from "./config/config.js";
import { exampleQuery } from "./graphql/example-query.js";

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (e) {
  console.error(e instanceof ConfigError ? e.message : e);
  process.exit(1);
}
const logger = pino({ level: config.logLevel });
try {
  const app = await createApp(config, logger);
  const server = await app.listen();
  logger.info({ url: server.url, activeVersion: config.matcher.initialVersion }, "defect-lens ready");
  process.stdout.write(
    [
      "",
      `defect-lens web app:      ${server.url}`,
      `GraphQL endpoint:         ${server.graphqlUrl}`,
      ...(config.http.graphiql ? [`GraphiQL (offline IDE):   ${server.url}graphiql`] : []),
      `Health, readiness, metrics: ${server.url}healthz ${server.url}readyz ${server.url}metrics`,
      "",
      "Try:",
      exampleQuery(server.graphqlUrl),
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
