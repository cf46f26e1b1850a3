/**
 * Texture descriptors: first- and second-order statistics (per-channel mean and standard deviation over the
 * spatial grid) of one mid-level feature map of the embedding model. The global embedding averages a small
 * defect away at the last layer; the spread of a stride-16 map keeps "something here differs from the rest
 * of the surface". The service uses it for one decision only: whether a query shows a defect at all (the
 * type prior, `src/adapted/type-prior.ts`). Channel mean and variance as texture statistics: Gatys, Ecker &
 * Bethge (CVPR 2016) and Huang & Belongie's AdaIN (ICCV 2017) use exactly these as a layer's "style".
 */
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

/** Name of the graph output added for the texture map. */
export const TEXTURE_OUTPUT = "defect_lens_texture_map";

/**
 * A copy of an ONNX model with `tensor` (a value inside the graph) added as the float graph output
 * {@link TEXTURE_OUTPUT}. A quantized tensor (made by a QLinearConv, QLinearAdd or QuantizeLinear, as in the
 * ONNX Model Zoo int8 models) gets a `DequantizeLinear` with its producer's output scale and zero point
 * first; a float tensor is passed through an `Identity`.
 * @throws Error when no node produces `tensor`, or it is the quantized output of another operator, or its
 *   scale cannot be found.
 */
export function exposeTextureTensor(modelBytes: Uint8Array, tensor: string): Uint8Array {
  const model = onnx.ModelProto.decode(modelBytes);
  const graph = model.graph;
  if (!graph) throw new Error("the model has no graph");
  graph.node ??= [];
  graph.output ??= [];
  const nodes = graph.node;
  const producer = nodes.find((n) => n.output?.includes(tensor));
  if (!producer) throw new Error(`no node of the model produces '${tensor}' (MODEL_TEXTURE_TENSOR)`);
  const op = producer.opType ?? "";
  // Where the producer keeps its output's scale and zero point: QLinearConv (x, x_scale, x_zp, w, w_scale,
  // w_zp, y_scale, y_zp, B) and QLinearAdd (a, sa, za, b, sb, zb, c_scale, c_zp) at 6 and 7,
  // QuantizeLinear (x, y_scale, y_zp) at 1 and 2.
  const at = { QLinearConv: 6, QLinearAdd: 6, QuantizeLinear: 1 }[op];
  if (at === undefined && /^QLinear|Quantize/.test(op))
    throw new Error(`'${tensor}' comes from a ${op} node, whose quantized output is not supported`);
  if (at !== undefined) {
    const scale = producer.input?.[at];
    const zeroPoint = producer.input?.[at + 1];
    if (!scale || !zeroPoint) throw new Error(`'${tensor}' has no output scale and zero point`);
    nodes.push(
      onnx.NodeProto.create({
        name: `${TEXTURE_OUTPUT}_dequantize`,
        opType: "DequantizeLinear",
        input: [tensor, scale, zeroPoint],
        output: [TEXTURE_OUTPUT],
      }),
    );
  } else {
    nodes.push(
      onnx.NodeProto.create({
        name: `${TEXTURE_OUTPUT}_identity`,
        opType: "Identity",
        input: [tensor],
        output: [TEXTURE_OUTPUT],
      }),
    );
  }
  graph.output.push(
    onnx.ValueInfoProto.create({
      name: TEXTURE_OUTPUT,
      type: onnx.TypeProto.create({
        tensorType: onnx.TypeProto.Tensor.create({ elemType: onnx.TensorProto.DataType.FLOAT }),
      }),
    }),
  );
  return onnx.ModelProto.encode(model).finish();
}

/**
 * The texture descriptor of each image of a batch of feature maps.
 * @param maps - `n` x `channels` x `cells` floats (NCHW, `cells` = height x width), row-major.
 * @returns `n` x (2 x `channels`) floats: per image the channel means, L2-normalised, then the channel
 *   standard deviations, L2-normalised, both halves scaled by 1/sqrt(2), so each descriptor has unit length
 *   and the two statistics weigh the same. A half that is all zero stays zero.
 */
export function textureDescriptors(maps: Float32Array, n: number, channels: number): Float32Array {
  const cells = maps.length / (n * channels);
  const out = new Float32Array(n * 2 * channels);
  const half = Math.SQRT1_2;
  for (let i = 0; i < n; i++) {
    const base = i * channels * cells;
    const o = i * 2 * channels;
    let meanNorm = 0;
    let stdNorm = 0;
    for (let c = 0; c < channels; c++) {
      let s = 0;
      let s2 = 0;
      for (let k = base + c * cells, end = k + cells; k < end; k++) {
        const x = maps[k] as number;
        s += x;
        s2 += x * x;
      }
      const mean = s / cells;
      const std = Math.sqrt(Math.max(0, s2 / cells - mean * mean));
      out[o + c] = mean;
      out[o + channels + c] = std;
      meanNorm += mean * mean;
      stdNorm += std * std;
    }
    meanNorm = Math.sqrt(meanNorm);
    stdNorm = Math.sqrt(stdNorm);
    for (let c = 0; c < channels; c++) {
      out[o + c] = meanNorm > 0 ? ((out[o + c] as number) / meanNorm) * half : 0;
      out[o + channels + c] = stdNorm > 0 ? ((out[o + channels + c] as number) / stdNorm) * half : 0;
    }
  }
  return out;
}
