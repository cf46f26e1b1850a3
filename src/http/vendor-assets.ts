import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);

/** Folder of an installed package, found through Node's resolution. */
const packageDir = (name: string) => path.dirname(require.resolve(`${name}/package.json`));

/**
 * Browser files served from npm packages under `/vendor/<name>`, so the GraphQL IDE works with no CDN
 * (the machines are air-gapped). GraphiQL 3 is the last major version with a UMD bundle, which needs
 * React 18's UMD builds (React 19 has none).
 */
export function vendorAssets(): ReadonlyMap<string, { file: string; contentType: string }> {
  const react = packageDir("react");
  const reactDom = packageDir("react-dom");
  const graphiql = packageDir("graphiql");
  const js = "text/javascript; charset=utf-8";
  return new Map([
    ["react.production.min.js", { file: path.join(react, "umd/react.production.min.js"), contentType: js }],
    [
      "react-dom.production.min.js",
      { file: path.join(reactDom, "umd/react-dom.production.min.js"), contentType: js },
    ],
    ["graphiql.min.js", { file: path.join(graphiql, "graphiql.min.js"), contentType: js }],
    [
      "graphiql.min.css",
      { file: path.join(graphiql, "graphiql.min.css"), contentType: "text/css; charset=utf-8" },
    ],
  ]);
}
