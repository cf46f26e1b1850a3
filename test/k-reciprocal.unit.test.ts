import { describe, expect, it } from "vitest";
import { prepareKReciprocal, rerankKReciprocal } from "../src/eval/k-reciprocal.js";

/** Two tight gallery clusters, A (rows 0-3) and B (rows 4-7): 0.9 within a cluster, 0.1 across. */
function twoClusters(): Float64Array[] {
  return Array.from({ length: 8 }, (_, i) =>
    Float64Array.from({ length: 8 }, (_, j) =>
      i === j ? 1 : Math.floor(i / 4) === Math.floor(j / 4) ? 0.9 : 0.1,
    ),
  );
}

describe("k-reciprocal re-ranking (Zhong et al. 2017)", () => {
  // The query resembles all of A (0.7) but one image of B a little more (0.75): a lone false match.
  const query = Float64Array.from([0.7, 0.7, 0.7, 0.7, 0.75, 0.2, 0.2, 0.2]);
  const gallery = prepareKReciprocal({ galleryScores: twoClusters(), k1: 4, k2: 1 });

  it("moves the cluster whose neighbours the query shares ahead of a lone closer match", () => {
    expect(Array.from(query.keys()).sort((a, b) => (query[b] as number) - (query[a] as number))[0]).toBe(4);
    const order = rerankKReciprocal(gallery, query, { topN: 8, lambda: 0.3 });
    expect(order.slice(0, 4).sort()).toEqual([0, 1, 2, 3]);
    expect(order[4]).toBe(4);
  });

  it("keeps the original order when only the original distance counts, and rows beyond top-N in place", () => {
    expect(rerankKReciprocal(gallery, query, { topN: 8, lambda: 1 })).toEqual([4, 0, 1, 2, 3, 5, 6, 7]);
    const head = rerankKReciprocal(gallery, query, { topN: 5, lambda: 0.3 });
    expect(head.slice(5)).toEqual([5, 6, 7]);
    expect(head.slice(0, 5).sort()).toEqual([0, 1, 2, 3, 4]);
  });
});
