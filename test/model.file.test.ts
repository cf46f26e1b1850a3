import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config/config.js";
import { ensureModelFile, sha256File } from "../src/embedding/model.file.js";
import { SHIPPED_MODELS_DIR, scratchDir, testLogger } from "./support/services.js";

/** The shipped default model: the bytes the stand-in model host serves. */
const MODEL = path.join(SHIPPED_MODELS_DIR, "mobilenetv2-12-int8", "model.onnx");
const SHIPPED_SHA256 = "025ec4d51a076d16eea96f055c502396baa8ea1ca874b88983725e0609f4a678";

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

  it("finds the shipped default model with nothing configured and checks its sha256", async () => {
    const config = loadConfig({});
    expect(config.model.path).toBe(path.resolve("models", "mobilenetv2-12-int8", "model.onnx"));
    expect(config.model).toMatchObject({ sha256: SHIPPED_SHA256, sha256Source: "shipped" });
    expect(await ensureModelFile(config.model, testLogger)).toBe(SHIPPED_SHA256);
  });

  it("refuses a shipped model file whose checksum does not match, saying how to restore it", async () => {
    const dir = path.join(scratch.dir, "models");
    const target = path.join(dir, "mobilenetv2-12-int8", "model.onnx");
    await mkdir(path.dirname(target), { recursive: true });
    const bytes = await readFile(MODEL);
    bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] as number) ^ 0xff; // one damaged byte
    await writeFile(target, bytes);
    const config = loadConfig({ MODELS_DIR: dir });
    await expect(ensureModelFile(config.model, testLogger)).rejects.toThrow(
      new RegExp(
        `has sha256 [0-9a-f]{64}, but the 'mobilenetv2-12-int8' model shipped with defect-lens has ${SHIPPED_SHA256}` +
          ".*damaged or was replaced.*git checkout -- models/mobilenetv2-12-int8/model\\.onnx.*MODEL_PATH",
      ),
    );
    // Another file, named by MODEL_PATH, is not held to the shipped file's checksum.
    const other = loadConfig({ MODEL_PATH: target });
    expect(other.model.sha256).toBeUndefined();
    await expect(ensureModelFile(other.model, testLogger)).resolves.toMatch(/^[0-9a-f]{64}$/);
  });
});
