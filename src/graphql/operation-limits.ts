import type { ApolloServerPlugin } from "@apollo/server";
import { ApolloArmor } from "@escape.tech/graphql-armor";
import { GraphQLError, type ValidationRule } from "graphql";
import type { GraphQLContext } from "./graphql.context.js";

/** Most lexical tokens in one document (GraphQL Armor's default); the parser stops counting there. */
const MAX_TOKENS = 1000;

/** Limits on one GraphQL operation, checked in validation: before any resolver runs or image is decoded. */
export interface OperationLimits {
  /** `searchSimilar` fields (aliases included) per document. */
  maxSearches: number;
  maxAliases: number;
  maxDepth: number;
}

/**
 * At most `max` `searchSimilar` fields in a document: each one decodes an image and runs the model, so
 * aliases would multiply the cost of one request (a 500-alias query took 6.9 s and stalled everyone).
 * Counts every field node, fragments included, which errs on the strict side.
 */
export function maxSearchesRule(max: number): ValidationRule {
  return (context) => {
    let count = 0;
    return {
      Field(node) {
        if (node.name.value !== "searchSimilar") return;
        count++;
        if (count === max + 1) {
          context.reportError(
            new GraphQLError(
              `At most ${max} searchSimilar per request (MAX_SEARCHES_PER_OPERATION); send the others as separate requests.`,
              { nodes: [node], extensions: { limit: "MAX_SEARCHES_PER_OPERATION" } },
            ),
          );
        }
      },
    };
  };
}

/**
 * Apollo plugins and validation rules enforcing {@link OperationLimits}, plus GraphQL Armor's
 * (https://escape.tech/graphql-armor/) cost and directive limits at its defaults, and a token limit in the
 * parser. Refusals are `GRAPHQL_PARSE_FAILED` (too many tokens) or `GRAPHQL_VALIDATION_FAILED`, HTTP 400.
 */
export function operationLimits(limits: OperationLimits) {
  const armor = new ApolloArmor({
    maxAliases: { n: limits.maxAliases },
    maxDepth: { n: limits.maxDepth },
    // Armor's token limit throws from Apollo 5's unexpected-error hook (HTTP 500); graphql-js's own
    // parser limit (parseOptions.maxTokens) does the same job with a clean GRAPHQL_PARSE_FAILED.
    maxTokens: { enabled: false },
  }).protect();
  return {
    parseOptions: { maxTokens: MAX_TOKENS },
    // GraphQL Armor's types name @apollo/server's CommonJS build; the plugins are the same objects.
    plugins: armor.plugins as unknown as ApolloServerPlugin<GraphQLContext>[],
    validationRules: [...armor.validationRules, maxSearchesRule(limits.maxSearches)],
  };
}
