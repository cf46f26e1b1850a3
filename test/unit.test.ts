import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { checkAdminAccess } from "../src/graphql/admin.auth.js";
import { encodeV1Code, parseV1FileName } from "../src/matchers/file-name.convention.js";

describe("configuration", () => {
  it("defaults to V2, the int8 MobileNetV2 preset and embedded servers", () => {
    const c = loadConfig({});
    expect(c.matcher.initialVersion).toBe("v2");
    expect(c.model.name).toBe("mobilenetv2-12-int8");
    expect(c.model.dimension).toBe(1280);
    expect(c.database.kind).toBe("embedded");
    expect(c.storage.server.kind).toBe("embedded");
  });

  it("accepts the old system's USE_INDEX_V2 flag, with MATCHER_VERSION winning", () => {
    expect(loadConfig({ USE_INDEX_V2: "false" }).matcher.initialVersion).toBe("v1");
    expect(loadConfig({ USE_INDEX_V2: "true" }).matcher.initialVersion).toBe("v2");
    expect(loadConfig({ USE_INDEX_V2: "false", MATCHER_VERSION: "v2" }).matcher.initialVersion).toBe("v2");
  });

  it("accepts MINIO_* aliases for an external object store", () => {
    const c = loadConfig({
      MINIO_ENDPOINT: "http://127.0.0.1:9000",
      MINIO_ACCESS_KEY: "a",
      MINIO_SECRET_KEY: "b",
    });
    expect(c.storage.server).toMatchObject({ kind: "external", endpoint: "http://127.0.0.1:9000" });
  });

  it("reports every invalid variable at once", () => {
    try {
      loadConfig({ PORT: "http", MODEL_PRESET: "resnet", MAX_IMAGE_BYTES: "-1" });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const issues = (e as ConfigError).issues.join("\n");
      expect(issues).toContain("PORT");
      expect(issues).toContain("MODEL_PRESET");
      expect(issues).toContain("MAX_IMAGE_BYTES");
    }
  });

  it("applies model overrides on top of a preset", () => {
    const c = loadConfig({
      MODEL_PRESET: "clip-vit-b32",
      MODEL_MEAN: "0.5,0.5,0.5",
      MODEL_PATH: "/m/clip.onnx",
    });
    expect(c.model).toMatchObject({
      dimension: 512,
      inputName: "pixel_values",
      mean: [0.5, 0.5, 0.5],
      path: "/m/clip.onnx",
    });
  });
});

describe("V1 file names", () => {
  it("parses {product}_{defect}_{anything}.{ext}", () => {
    expect(parseV1FileName("P001_scratch_0001.jpg")).toEqual({ productCode: "P001", defectCode: "scratch" });
    expect(parseV1FileName("P001_scratch_a_b.png")).toEqual({ productCode: "P001", defectCode: "scratch" });
  });

  it("treats normal and good as normal images", () => {
    expect(parseV1FileName("P001_good_1.jpg")?.defectCode).toBeNull();
    expect(parseV1FileName("P001_normal_1.jpg")?.defectCode).toBeNull();
  });

  it("rejects names that do not follow the convention", () => {
    expect(parseV1FileName("scratch.jpg")).toBeUndefined();
    expect(parseV1FileName("P001_scratch.jpg")).toBeUndefined();
  });

  it("round-trips codes with underscores through encodeV1Code", () => {
    const name = `${encodeV1Code("steel_strip")}_${encodeV1Code("red_iron")}_1.jpg`;
    expect(parseV1FileName(name)).toEqual({ productCode: "steel-strip", defectCode: "red-iron" });
  });
});

describe("admin authorisation", () => {
  const token = "a-long-admin-token-123";
  it("is disabled, never open, without a configured token", () => {
    expect(checkAdminAccess(`Bearer ${token}`, undefined)).toBe("disabled");
  });
  it("distinguishes a missing from a wrong token", () => {
    expect(checkAdminAccess(undefined, token)).toBe("missing");
    expect(checkAdminAccess("Bearer nope", token)).toBe("invalid");
    expect(checkAdminAccess(`Bearer ${token}`, token)).toBe("granted");
  });
});
