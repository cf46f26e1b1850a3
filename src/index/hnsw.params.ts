/**
 * HNSW search/build parameters for faiss-node, which exposes no setter for them.
 *
 * FAISS serialises `HNSW::efConstruction` and `HNSW::efSearch` inside the index file, so they are set by
 * rewriting those two int32 fields of the serialised index and reading it back. Layout from FAISS
 * `faiss/impl/index_write.cpp` (1.7.x): fourcc `IHN?`, `write_index_header` (d int32, ntotal int64, two
 * int64 dummies, is_trained u8, metric_type int32, metric_arg float32 when metric_type > 1), then
 * `write_HNSW`: five vectors (assign_probas f64, cum_nneighbor_per_level i32, levels i32, offsets u64,
 * neighbors i32, each a u64 length then data), entry_point, max_level, efConstruction, efSearch,
 * upper_beam (int32 each). Checked against faiss-node 0.5.1 built on Debian's FAISS 1.7.3 by the tests.
 * Parameters: Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using HNSW
 * graphs", TPAMI 2018.
 */
export interface HnswParams {
  /** Candidate list size while inserting (FAISS default 40); larger builds a better graph, slower. */
  efConstruction?: number | undefined;
  /** Candidate list size while searching (FAISS default 16); larger raises recall, slower. */
  efSearch?: number | undefined;
}

const VECTOR_ELEMENT_BYTES = [8, 4, 4, 8, 4];

/** Byte offset of `efConstruction` in a serialised HNSW index, or undefined for other index types. */
function efConstructionOffset(buf: Buffer): number | undefined {
  if (buf.length < 4 || buf.subarray(0, 3).toString("latin1") !== "IHN") return undefined;
  let o = 4 + 4 + 8 + 16 + 1;
  const metric = buf.readInt32LE(o);
  o += 4 + (metric > 1 ? 4 : 0);
  for (const size of VECTOR_ELEMENT_BYTES) {
    const n = Number(buf.readBigUInt64LE(o));
    o += 8 + n * size;
  }
  return o + 8; // after entry_point and max_level
}

/** True when `head` (at least the first 3 bytes of a serialised index) starts an HNSW index. */
export const isHnswHeader = (head: Buffer) => head.subarray(0, 3).toString("latin1") === "IHN";

/** The parameters stored in a serialised HNSW index, or undefined for other index types. */
export function readHnswParams(buf: Buffer): Required<HnswParams> | undefined {
  const o = efConstructionOffset(buf);
  if (o === undefined) return undefined;
  return { efConstruction: buf.readInt32LE(o), efSearch: buf.readInt32LE(o + 4) };
}

/**
 * A copy of a serialised index with the given HNSW parameters; other index types are returned as they are.
 * @throws RangeError when a parameter is not a positive integer.
 */
export function withHnswParams(buf: Buffer, params: HnswParams): Buffer {
  const o = efConstructionOffset(buf);
  if (o === undefined) return buf;
  const out = Buffer.from(buf);
  for (const [value, at] of [
    [params.efConstruction, o],
    [params.efSearch, o + 4],
  ] as const) {
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 1)
      throw new RangeError(`HNSW parameter must be a positive integer, got ${value}`);
    out.writeInt32LE(value, at);
  }
  return out;
}
