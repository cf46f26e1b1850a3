import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { ModelConfig } from "../config/config.js";
import { sha256File } from "../shared/hash.js";

export { sha256File };

/**
 * Makes sure the model file exists: when it is missing and `downloadUrl` is configured, downloads it,
 * checks its sha256 and moves it into place atomically. An existing file is checked against `model.sha256`
 * (MODEL_SHA256, or the shipped default model's sum when it is loaded from MODELS_DIR).
 * @returns the sha256 of the model file (hex).
 * @throws Error with an actionable message when the file is missing and cannot be downloaded, or when
 *   the checksum does not match.
 */
export async function ensureModelFile(model: ModelConfig, logger: Logger): Promise<string> {
  if (!existsSync(model.path)) {
    if (!model.downloadUrl || !model.sha256) {
      throw new Error(
        `Model file not found: ${model.path}. Put the ONNX file of preset '${model.name}' there, ` +
          "or set MODEL_PATH (or MODELS_DIR) to where it is, or MODEL_URL + MODEL_SHA256 to download it on first start. " +
          "A relative MODELS_DIR (default `models`, where the default model ships) is read from the working directory: start from the repository folder.",
      );
    }
    logger.info({ url: model.downloadUrl }, "downloading model");
    const res = await fetch(model.downloadUrl);
    if (!res.ok) throw new Error(`Model download failed: HTTP ${res.status} from ${model.downloadUrl}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    const got = createHash("sha256").update(bytes).digest("hex");
    if (got !== model.sha256) {
      throw new Error(
        `Model download checksum mismatch: expected ${model.sha256}, got ${got}; file discarded.`,
      );
    }
    await mkdir(path.dirname(model.path), { recursive: true });
    const tmp = `${model.path}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, bytes);
      await rename(tmp, model.path);
    } finally {
      await rm(tmp, { force: true });
    }
    return got;
  }
  const sha = await sha256File(model.path);
  if (model.sha256 && sha !== model.sha256) throw new Error(mismatchMessage(model, sha));
  return sha;
}

/** What a checksum mismatch of an existing file means, and how to fix it, by where the expected sum came from. */
function mismatchMessage(model: ModelConfig, got: string): string {
  if (model.sha256Source === "shipped") {
    return (
      `Model file ${model.path} has sha256 ${got}, but the '${model.name}' model shipped with defect-lens ` +
      `has ${model.sha256} (see models/${model.name}/SOURCE.md): the file is damaged or was replaced. ` +
      `Restore it with \`git checkout -- models/${model.name}/model.onnx\` (or a fresh clone), ` +
      "or to use another file set MODEL_PATH to it (and MODEL_SHA256 to its sha256)."
    );
  }
  return (
    `Model file ${model.path} has sha256 ${got}, but MODEL_SHA256 is ${model.sha256}. ` +
    "Replace the file with the expected one, or correct MODEL_SHA256."
  );
}
