import { Worker, type WorkerOptions } from "node:worker_threads";

/**
 * Starts a worker thread running the module at `url`. When the service runs from TypeScript sources
 * (tsx, vitest) the module is a `.ts` file; Node 20 does not carry the `--import tsx` hooks into worker
 * threads, so the worker starts from a one-line bootstrap that loads it through tsx's `tsImport` API
 * (https://tsx.is/dev-api/ts-import).
 */
export function startModuleWorker(url: URL, options: Omit<WorkerOptions, "eval"> = {}): Worker {
  if (!url.pathname.endsWith(".ts")) return new Worker(url, options);
  const bootstrap =
    `const { tsImport } = await import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))});\n` +
    `await tsImport(${JSON.stringify(url.href)}, ${JSON.stringify(import.meta.url)});\n`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`), options);
}

/** URL of a sibling worker module, `.ts` when the caller itself runs from TypeScript sources. */
export function siblingModule(callerUrl: string, name: string): URL {
  return new URL(`./${name}${callerUrl.endsWith(".ts") ? ".ts" : ".js"}`, callerUrl);
}
