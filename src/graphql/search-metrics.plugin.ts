import type { ApolloServerPlugin } from "@apollo/server";
import { unwrapResolverError } from "@apollo/server/errors";
import type { SearchResult, SearchTiming } from "../search/search.service.js";
import { isDomainError } from "../shared/errors.js";
import type { GraphQLContext } from "./graphql.context.js";

/** How one searchSimilar field ended: its stage timings, or its error code (`extensions.code`). */
export type SearchOutcome = { timing: SearchTiming } | { errorCode: string };

/**
 * Tells `observe` how every `Query.searchSimilar` field resolved, refusals at the edge included: the search
 * metrics are the API's, so the search service itself stays free of them.
 */
export function searchMetricsPlugin(
  observe: (outcome: SearchOutcome) => void,
): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async executionDidStart() {
          return {
            willResolveField({ info }) {
              if (info.fieldName !== "searchSimilar" || info.parentType.name !== "Query") return;
              return (error, result) => {
                if (!error) return observe({ timing: (result as SearchResult).timing });
                const original = unwrapResolverError(error);
                observe({ errorCode: isDomainError(original) ? original.code : "INTERNAL_SERVER_ERROR" });
              };
            },
          };
        },
      };
    },
  };
}
