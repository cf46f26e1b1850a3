import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import { REPO_ROOT } from "./services.js";

/** A free TCP port on 127.0.0.1 (the OS picks it; released before returning). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Node's flags for the service, as `npm start` (package.json) and the image's ENTRYPOINT (Dockerfile) give
 * them: source maps for stack traces into src/, and the main heap's old generation started at 128 MB
 * (docs/operations.md, "Node's flags"). test/service-node-flags.unit.test.ts holds the three in step.
 */
export const SERVICE_NODE_FLAGS = ["--enable-source-maps", "--initial-old-space-size=128"] as const;

/**
 * One service process, `node <SERVICE_NODE_FLAGS> dist/main.js` as `npm start` and the image run it (the
 * global setup compiles dist/ from src/ first), as a replica of a deployment.
 */
export interface ReplicaProcess {
  readonly name: string;
  readonly url: string;
  readonly graphqlUrl: string;
  readonly child: ChildProcess;
  /** Everything it wrote (pino JSON lines and the banner), for failure messages. */
  output(): string;
  /** Resolves when `/readyz` answers 200; rejects with its last answer and output after `timeoutMs`. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit (a crash: no shutdown hook runs). */
  kill(): Promise<void>;
}

/**
 * Starts a replica with `env` on a free port.
 * @param launch - what runs it: `node` (default, `node <SERVICE_NODE_FLAGS> dist/main.js`) or `npm start`
 *   (the documented command: npm, then the build, then node in its place).
 * @param nodeFlags - Node's flags with `node` (default {@link SERVICE_NODE_FLAGS}), e.g. to compare one.
 */
export async function startReplica(
  name: string,
  env: Record<string, string>,
  args: string[] = [],
  launch: "node" | "npm start" = "node",
  {
    processGroup = false,
    nodeFlags = SERVICE_NODE_FLAGS,
  }: { processGroup?: boolean; nodeFlags?: readonly string[] } = {},
): Promise<ReplicaProcess> {
  const port = await freePort();
  const [command, argv] =
    launch === "node"
      ? [process.execPath, [...nodeFlags, "dist/main.js", ...args]]
      : ["npm", ["start", "--silent", "--", ...args]];
  const child = spawn(command, argv, {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      ...env,
      PORT: String(port),
      HOST: "127.0.0.1",
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: processGroup,
  });
  let out = "";
  const keep = (b: Buffer) => {
    out += b.toString();
    if (out.length > 400_000) out = out.slice(-200_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}/`;
  return {
    name,
    url,
    graphqlUrl: `${url}graphql`,
    child,
    output: () => out,
    async waitReady(timeoutMs = 120_000) {
      const until = Date.now() + timeoutMs;
      let last = "no answer";
      while (Date.now() < until) {
        if (child.exitCode !== null)
          throw new Error(`${name} exited (${child.exitCode}):\n${out.slice(-4000)}`);
        try {
          const res = await fetch(`${url}readyz`);
          last = `${res.status} ${await res.text()}`;
          if (res.status === 200) return;
        } catch (e) {
          last = (e as Error).message;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`${name} not ready after ${timeoutMs} ms: ${last}\n${out.slice(-4000)}`);
    },
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
    async kill() {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * A TCP relay to `target` that can be stopped (every connection cut, new ones refused) and started again
 * on the same port: a database outage as a replica sees it.
 */
export async function startTcpRelay(target: { host: string; port: number }) {
  const port = await freePort();
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  const open = () =>
    new Promise<void>((resolve) => {
      server = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host);
        sockets.add(client).add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on("error", drop).on("close", drop);
        upstream.on("error", drop).on("close", drop);
        client.pipe(upstream).pipe(client);
      });
      server.listen(port, "127.0.0.1", resolve);
    });
  await open();
  return {
    port,
    async stop() {
      const s = server;
      server = undefined;
      for (const c of sockets) c.destroy();
      sockets.clear();
      if (s) await new Promise((r) => s.close(r));
    },
    start: open,
  };
}
