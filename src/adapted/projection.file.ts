import { z } from "zod";
import type { Projection } from "./projection.js";

/** File name of a projection, beside the adapted index it produced. */
export const PROJECTION_FILE = "projection.json";

const floats = z.string().transform((b64) => {
  const buf = Buffer.from(b64, "base64");
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
});

/** The persisted form of a {@link Projection}: float arrays as base64 of little-endian float32. */
export const projectionFileSchema = z.object({
  formatVersion: z.literal(1),
  inDim: z.number().int().positive(),
  outDim: z.number().int().positive(),
  blend: z.number().min(0).max(1),
  shrinkage: z.number().min(0).max(1),
  scope: z.enum(["all", "defect"]),
  mean: floats,
  matrix: floats,
  typePrior: z
    .object({
      descriptor: z.enum(["embedding", "texture"]),
      inDim: z.number().int().positive(),
      mean: floats,
      weights: floats,
      bias: z.number(),
      scale: z.number().positive(),
      beta: z.number().min(0),
    })
    .optional(),
});

/** Serialises a projection to JSON (exact: float32 bytes, not decimal text). */
export function serializeProjection(p: Projection): string {
  const b64 = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
  return JSON.stringify({
    formatVersion: 1,
    inDim: p.inDim,
    outDim: p.outDim,
    blend: p.blend,
    shrinkage: p.shrinkage,
    scope: p.scope,
    mean: b64(p.mean),
    matrix: b64(p.matrix),
    typePrior: p.typePrior
      ? { ...p.typePrior, mean: b64(p.typePrior.mean), weights: b64(p.typePrior.weights) }
      : undefined,
  });
}

/**
 * Parses a projection file.
 * @throws Error when it does not parse or its arrays do not match its dimensions.
 */
export function parseProjection(text: string): Projection {
  const p = projectionFileSchema.parse(JSON.parse(text));
  if (p.mean.length !== p.inDim || p.matrix.length !== p.inDim * p.outDim)
    throw new Error(`projection arrays do not match ${p.outDim} x ${p.inDim}`);
  const t = p.typePrior;
  if (t && (t.mean.length !== t.inDim || t.weights.length !== t.inDim))
    throw new Error(`type prior arrays do not match its ${t.inDim} dimensions`);
  return {
    inDim: p.inDim,
    outDim: p.outDim,
    blend: p.blend,
    scope: p.scope,
    shrinkage: p.shrinkage,
    mean: p.mean,
    matrix: p.matrix,
    ...(t ? { typePrior: t } : {}),
  };
}
