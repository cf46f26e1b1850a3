// graphql-upload 17 documents its types in JSDoc inside .mjs files, which tsc does not read from
// node_modules; these are the parts the service uses (processRequest.mjs, GraphQLUpload.mjs).
declare module "graphql-upload/processRequest.mjs" {
  import type { ReadStream } from "node:fs";
  import type { IncomingMessage, ServerResponse } from "node:http";

  /** One uploading file (graphql-upload's FileUpload). */
  export interface FileUpload {
    filename: string;
    mimetype: string;
    encoding: string;
    createReadStream(options?: { encoding?: BufferEncoding; highWaterMark?: number }): ReadStream;
  }

  export interface ProcessRequestOptions {
    maxFieldSize?: number;
    maxFileSize?: number;
    maxFiles?: number;
  }

  /** Parses a GraphQL multipart request into operations whose Upload variables are promises. */
  export default function processRequest(
    request: IncomingMessage,
    response: ServerResponse,
    options?: ProcessRequestOptions,
  ): Promise<Record<string, unknown> | Record<string, unknown>[]>;
}

declare module "graphql-upload/GraphQLUpload.mjs" {
  import type { GraphQLScalarType } from "graphql";

  const GraphQLUpload: GraphQLScalarType;
  export default GraphQLUpload;
}
