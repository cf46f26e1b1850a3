import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config/config.js";
import { ensureModelFile, sha256File } from "../src/embedding/model.file.js";
import { MODELS_DIR, scratchDir, testLogger } from "./support/services.js";

const MODEL = path.join(MODELS_DIR, "squeezenet1.1", "model.onnx");

describe("model file on first start", () => {
  let server: Server;
  let url: string;
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  beforeAll(async () => {
    scratch = await scratchDir();
    const bytes = await readFile(MODEL);
    // A local HTTP server stands in for the model host (these machines reach no other).
    server = createServer((_, res) => res.end(bytes));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/model.onnx`;
  });
  afterAll(async () => {
    server?.close();
    await scratch?.remove();
  });

  it("downloads a missing model, checks its sha256 and moves it into place", async () => {
    const sha = await sha256File(MODEL);
    const target = path.join(scratch.dir, "ok", "model.onnx");
    const config = loadConfig({ MODEL_PATH: target, MODEL_URL: url, MODEL_SHA256: sha });
    expect(await ensureModelFile(config.model, testLogger)).toBe(sha);
    expect(await sha256File(target)).toBe(sha);
  });

  it("discards a download whose checksum does not match, leaving no file behind", async () => {
    const target = path.join(scratch.dir, "bad", "model.onnx");
    const config = loadConfig({ MODEL_PATH: target, MODEL_URL: url, MODEL_SHA256: "0".repeat(64) });
    await expect(ensureModelFile(config.model, testLogger)).rejects.toThrow(/checksum mismatch/);
    expect(existsSync(target)).toBe(false);
    expect(existsSync(path.dirname(target)) ? await readdir(path.dirname(target)) : []).toEqual([]);
  });

  it("says what to do when the model is missing and no URL is configured", async () => {
    const config = loadConfig({ MODEL_PATH: path.join(scratch.dir, "none.onnx") });
    await expect(ensureModelFile(config.model, testLogger)).rejects.toThrow(/MODEL_PATH.*MODEL_URL/);
  });
});
