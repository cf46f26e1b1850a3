import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";

const { onnx } = onnxProto;

/**
 * Dense float64 matrix products for the adapted-space fit, run by onnxruntime's CPU `Gemm` kernel (MLAS /
 * Eigen GEMM: blocked, vectorised). The fit's large products (a 4,000 x 4,000 Gram matrix of 1280-d rows,
 * d x d covariances, projections onto 256 axes) are 10-20 G multiply-adds, 20-40 s in JavaScript on one
 * core and a few seconds here; sums stay in float64. onnxruntime-node is already the service's inference
 * runtime, so this adds no dependency and no native build.
 */
export interface DenseKernels {
  /**
   * `op(a) op(b)` with `op(x) = x^T` when asked: `a` is `rows x inner` (or `inner x rows` with `transA`),
   * `b` is `inner x cols` (or `cols x inner` with `transB`), all row-major.
   * @returns `rows x cols`, row-major.
   */
  gemm(args: {
    a: Float64Array;
    b: Float64Array;
    rows: number;
    inner: number;
    cols: number;
    transA?: boolean;
    transB?: boolean;
  }): Promise<Float64Array>;
  /** Releases the sessions. */
  close(): Promise<void>;
}

/** A one-node ONNX graph: `Y = Gemm(A, B)` on float64 with symbolic dimensions. */
function gemmModel(transA: boolean, transB: boolean): Uint8Array {
  const type = (dims: [string, string]) =>
    onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: onnx.TensorProto.DataType.DOUBLE,
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) => onnx.TensorShapeProto.Dimension.create({ dimParam: d })),
        }),
      }),
    });
  const attribute = (name: string, on: boolean) =>
    onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: on ? 1 : 0 });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: 13 })],
    graph: onnx.GraphProto.create({
      name: "gemm",
      node: [
        onnx.NodeProto.create({
          opType: "Gemm",
          input: ["a", "b"],
          output: ["y"],
          attribute: [attribute("transA", transA), attribute("transB", transB)],
        }),
      ],
      input: [
        onnx.ValueInfoProto.create({ name: "a", type: type(transA ? ["k", "n"] : ["n", "k"]) }),
        onnx.ValueInfoProto.create({ name: "b", type: type(transB ? ["m", "k"] : ["k", "m"]) }),
      ],
      output: [onnx.ValueInfoProto.create({ name: "y", type: type(["n", "m"]) })],
    }),
  });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Dense kernels on `threads` onnxruntime intra-op threads (idle threads sleep: no spinning), one session
 * per transpose pattern, created when first used.
 */
export function createDenseKernels({ threads }: { threads: number }): DenseKernels {
  const sessions = new Map<string, Promise<ort.InferenceSession>>();
  const session = (transA: boolean, transB: boolean) => {
    const key = `${transA}|${transB}`;
    let s = sessions.get(key);
    if (!s) {
      s = ort.InferenceSession.create(gemmModel(transA, transB), {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
      });
      sessions.set(key, s);
    }
    return s;
  };
  return {
    async gemm({ a, b, rows, inner, cols, transA = false, transB = false }) {
      if (a.length !== rows * inner || b.length !== inner * cols)
        throw new Error(
          `gemm: ${a.length} and ${b.length} values do not make ${rows}x${inner} and ${inner}x${cols}`,
        );
      if (rows === 0 || cols === 0) return new Float64Array(rows * cols);
      if (inner === 0) return new Float64Array(rows * cols);
      const s = await session(transA, transB);
      const out = await s.run({
        a: new ort.Tensor("float64", a, transA ? [inner, rows] : [rows, inner]),
        b: new ort.Tensor("float64", b, transB ? [cols, inner] : [inner, cols]),
      });
      const y = out.y?.data;
      if (!(y instanceof Float64Array) || y.length !== rows * cols)
        throw new Error("gemm: no float64 output");
      return y;
    },
    async close() {
      for (const s of sessions.values()) await (await s).release();
      sessions.clear();
    },
  };
}
