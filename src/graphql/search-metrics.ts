import type { SearchTiming } from "../search/search.service.js";
import { isDomainError } from "../shared/errors.js";
import type { Resolvers } from "./generated/resolvers-types.js";

/** How one searchSimilar field ended: its stage timings, or its error code (`extensions.code`). */
export type SearchOutcome = { timing: SearchTiming } | { errorCode: string };

/**
 * `resolvers` with `Query.searchSimilar` telling `observe` how each call ended, refusals at the edge
 * (bad input, OVERLOADED) included: the search metrics are the API's, so the search service itself stays
 * free of them. A wrapper of the one resolver rather than an Apollo plugin's `willResolveField`, which makes
 * Apollo instrument every field of every response (about 60 KB of allocation and a hook call per field of
 * a ten-hit search, measured with V8's sampling heap profiler).
 * @param observe - called once per call, after it settled; must not throw and must return at once.
 * @throws Error at startup when `Query.searchSimilar` is not a resolver function.
 */
export function withSearchMetrics(
  resolvers: Resolvers,
  observe: (outcome: SearchOutcome) => void,
): Resolvers {
  const inner = resolvers.Query?.searchSimilar;
  if (typeof inner !== "function") throw new Error("Query.searchSimilar must be a resolver function");
  return {
    ...resolvers,
    Query: {
      ...resolvers.Query,
      searchSimilar: async (parent, args, ctx, info) => {
        let result: Awaited<ReturnType<typeof inner>>;
        try {
          result = await inner(parent, args, ctx, info);
        } catch (e) {
          observe({ errorCode: isDomainError(e) ? e.code : "INTERNAL_SERVER_ERROR" });
          throw e;
        }
        // Outside the try: an answered search is never turned into an error by its metrics.
        observe({ timing: result.timing });
        return result;
      },
    },
  };
}
