import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Upload from "graphql-upload/Upload.mjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readUpload, type UploadPromise } from "../src/graphql/upload.js";
import { MultipartRequestError, readGraphQLMultipart } from "../src/http/multipart-request.js";

/** A real HTTP server that parses each request and answers what it got (or the refusal). */
describe("GraphQL multipart request reader", () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      readGraphQLMultipart(req, { maxFileSize: 1000, maxFiles: 2, maxFieldSize: 2000 }).then(
        async (ops) => {
          const vars = (ops as { variables: Record<string, unknown> }).variables;
          const files: Record<string, string> = {};
          for (const [k, v] of Object.entries(vars))
            if (v instanceof Upload)
              files[k] = (await readUpload(v.promise as UploadPromise, 1000)).toString();
          res.end(JSON.stringify({ ok: true, files, query: (ops as { query: string }).query }));
        },
        (e: Error) => {
          res.statusCode = e instanceof MultipartRequestError ? e.status : 500;
          res.end(JSON.stringify({ ok: false, message: e.message }));
        },
      );
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const send = async (parts: [string, string | Blob][]) => {
    const form = new FormData();
    for (const [k, v] of parts) form.append(k, v);
    const res = await fetch(url, { method: "POST", body: form });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const ops = JSON.stringify({ query: "q", variables: { a: null, b: null } });

  it("puts each mapped file at its paths, in memory", async () => {
    const r = await send([
      ["operations", ops],
      ["map", JSON.stringify({ 0: ["variables.a"], 1: ["variables.b"] })],
      ["0", new Blob(["first file"])],
      ["1", new Blob(["second"])],
    ]);
    expect(r).toEqual({
      status: 200,
      body: { ok: true, files: { a: "first file", b: "second" }, query: "q" },
    });
  });

  it("refuses a file over the limit with 413, and too many files", async () => {
    const big = await send([
      ["operations", ops],
      ["map", JSON.stringify({ 0: ["variables.a"] })],
      ["0", new Blob(["x".repeat(1001)])],
    ]);
    expect(big.status).toBe(413);
    expect(big.body.message).toMatch(/over the limit of 1000 bytes/);
    const many = await send([
      ["operations", ops],
      ["map", JSON.stringify({ 0: ["variables.a"], 1: ["variables.b"], 2: ["variables.a"] })],
    ]);
    expect(many.status).toBe(413);
  });

  it("refuses malformed requests with 400 and a reason", async () => {
    const cases: [string, [string, string | Blob][], RegExp][] = [
      ["no map", [["operations", ops]], /'operations' or 'map' field is missing/],
      [
        "map first",
        [
          ["map", "{}"],
          ["operations", ops],
        ],
        /'map' field came before 'operations'/,
      ],
      [
        "bad JSON",
        [
          ["operations", "{nope"],
          ["map", "{}"],
        ],
        /not JSON/,
      ],
      [
        "missing file",
        [
          ["operations", ops],
          ["map", JSON.stringify({ 0: ["variables.a"] })],
        ],
        /file '0' in the map is missing/,
      ],
      [
        "bad path",
        [
          ["operations", ops],
          ["map", JSON.stringify({ 0: ["variables.c.d"] })],
          ["0", new Blob(["f"])],
        ],
        /not in the operations/,
      ],
      [
        "prototype",
        [
          ["operations", ops],
          ["map", JSON.stringify({ 0: ["__proto__.polluted"] })],
          ["0", new Blob(["f"])],
        ],
        /not in the operations/,
      ],
      [
        "file first",
        [
          ["0", new Blob(["f"])],
          ["operations", ops],
          ["map", "{}"],
        ],
        /file came before/,
      ],
    ];
    for (const [what, parts, message] of cases) {
      const r = await send(parts);
      expect({ what, status: r.status }).toEqual({ what, status: 400 });
      expect(r.body.message).toMatch(message);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
