/**
 * `INDEX_FACTORY=auto`: which FAISS index a gallery of a given size gets. Exact Flat search while it is
 * small enough to answer within the latency budget; a compressed approximate index beyond. The choice
 * and its measurements are in docs/benchmarks.md ("Choosing the auto factory").
 */

/** The configured value that asks for a size-dependent factory. */
export const AUTO_FACTORY = "auto";

/** The two sides of `auto`. */
export interface AutoFactoryPolicy {
  /** Galleries up to this many vectors get exact `Flat`. */
  flatMaxVectors: number;
  /** Factory string for larger galleries. */
  annFactory: string;
}

/**
 * The factory string to build for `count` vectors.
 * @param configured - INDEX_FACTORY: `auto` or a FAISS factory string used as is.
 */
export function resolveFactory(configured: string, count: number, policy: AutoFactoryPolicy): string {
  if (configured.trim().toLowerCase() !== AUTO_FACTORY) return configured;
  return count <= policy.flatMaxVectors ? "Flat" : policy.annFactory;
}

/** True for a factory whose search is exact (recall 1 by construction). */
export const isExactFactory = (factory: string) => /^\s*(IDMap,)?Flat\s*$/i.test(factory);
