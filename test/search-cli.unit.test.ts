import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectQueryImages,
  formatCsv,
  formatJson,
  type QueryOutcome,
  toResultRows,
} from "../src/cli/search.command.js";
import { ConfigError } from "../src/config/config.js";
import { defaultGraphqlUrl } from "../src/config/search-client.config.js";
import { scratchDir } from "./support/services.js";

describe("the search command's pieces", () => {
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  beforeAll(async () => {
    scratch = await scratchDir();
  });
  afterAll(async () => {
    await scratch?.remove();
  });

  it("walks folders recursively for image extensions in any case, skips other files there, and keeps files given explicitly", async () => {
    const root = path.join(scratch.dir, "walk");
    await mkdir(path.join(root, "a", "b"), { recursive: true });
    for (const f of [
      "a/b/deep.TIFF",
      "a/one.jpg",
      "a/notes.txt",
      "two.Png",
      "three.avif",
      "four.gif",
      "skip.bmp",
    ])
      await writeFile(path.join(root, f), "x");
    const explicit = path.join(root, "a", "notes.txt");
    const files = await collectQueryImages([root, explicit, path.join(root, "two.Png")]);
    expect(files).toEqual([
      path.join(root, "a/b/deep.TIFF"),
      path.join(root, "a/one.jpg"),
      path.join(root, "four.gif"),
      path.join(root, "three.avif"),
      path.join(root, "two.Png"),
      explicit,
    ]);
    await expect(collectQueryImages([path.join(root, "missing")])).rejects.toThrow(/ENOENT/);
  });

  it("writes CSV that csv-parse reads back field for field, with commas, quotes and line breaks in file names, and empty fields for null", () => {
    const outcomes: QueryOutcome[] = [
      {
        queryFile: 'odd, "name"\nx.jpg',
        ok: true,
        suggestion: { productCode: "p", defectCode: null, share: 0.75, votes: 4 },
        hits: [
          {
            rank: 1,
            score: 0.93,
            imageId: "7",
            productCode: "p",
            defectCode: null,
            storageUrl: "s3://b/k",
            downloadUrl: "http://h/k?a=1&b=2",
          },
        ],
      },
      { queryFile: "bad.jpg", ok: false, message: "not an image", code: "INVALID_IMAGE_FORMAT" },
    ];
    const rows = parse(formatCsv(toResultRows(outcomes)), { columns: true }) as Record<string, string>[];
    expect(rows).toEqual([
      {
        query_file: 'odd, "name"\nx.jpg',
        rank: "1",
        score: "0.93",
        image_id: "7",
        product_code: "p",
        defect_code: "",
        storage_url: "s3://b/k",
        download_url: "http://h/k?a=1&b=2",
        suggested_product_code: "p",
        suggested_defect_code: "",
        suggestion_share: "0.75",
      },
    ]);
    const json = JSON.parse(formatJson(outcomes));
    expect(json.rows).toHaveLength(1);
    expect(json.rows[0]).not.toHaveProperty("suggestionShare");
    expect(json.suggestions).toEqual([
      {
        queryFile: 'odd, "name"\nx.jpg',
        suggestion: { productCode: "p", defectCode: null, share: 0.75, votes: 4 },
      },
    ]);
    expect(json.failures).toEqual([
      { queryFile: "bad.jpg", message: "not an image", code: "INVALID_IMAGE_FORMAT" },
    ]);
  });

  it("defaults the endpoint to DEFECT_LENS_URL, else the service's HOST and PORT, and refuses PORT 0 or a bad URL", () => {
    expect(defaultGraphqlUrl({})).toBe("http://127.0.0.1:4000/graphql");
    expect(defaultGraphqlUrl({ HOST: "0.0.0.0", PORT: "4100" })).toBe("http://127.0.0.1:4100/graphql");
    expect(defaultGraphqlUrl({ HOST: "::1", PORT: "4100" })).toBe("http://[::1]:4100/graphql");
    expect(defaultGraphqlUrl({ PORT: "0", DEFECT_LENS_URL: "https://dl.example/graphql" })).toBe(
      "https://dl.example/graphql",
    );
    expect(() => defaultGraphqlUrl({ PORT: "0" })).toThrow(ConfigError);
    expect(() => defaultGraphqlUrl({ DEFECT_LENS_URL: "ftp://x/graphql" })).toThrow(ConfigError);
  });
});
