// graphql-upload 17 documents its types in JSDoc inside .mjs files, which tsc does not read from
// node_modules; these are the parts the service uses (processRequest.mjs's types, Upload.mjs,
// GraphQLUpload.mjs).
declare module "graphql-upload/processRequest.mjs" {
  import type { IncomingMessage, ServerResponse } from "node:http";
  import type { Readable } from "node:stream";

  /** One uploading file (graphql-upload's FileUpload). */
  export interface FileUpload {
    filename: string;
    mimetype: string;
    encoding: string;
    createReadStream(options?: { encoding?: BufferEncoding; highWaterMark?: number }): Readable;
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

declare module "graphql-upload/Upload.mjs" {
  import type { FileUpload } from "graphql-upload/processRequest.mjs";

  /** A file of a multipart request; the Upload scalar resolves to its `promise`. */
  export default class Upload {
    promise: Promise<FileUpload>;
    file?: FileUpload;
    resolve(file: FileUpload): void;
    reject(reason: Error): void;
  }
}
