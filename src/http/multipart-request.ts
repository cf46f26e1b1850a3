import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import busboy from "busboy";
import Upload from "graphql-upload/Upload.mjs";
import type { UploadedFile } from "../graphql/upload.js";

/** Limits of one multipart request (bytes, counts). */
export interface MultipartLimits {
  /** Largest file part (bytes); a larger one fails the request with status 413. */
  maxFileSize: number;
  /** Most file parts in one request. */
  maxFiles: number;
  /** Largest `operations` or `map` field (bytes). */
  maxFieldSize: number;
}

/** Why a multipart request was refused, with the HTTP status to answer (400, or 413 for a limit). */
export class MultipartRequestError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 413,
  ) {
    super(message);
  }
}

/** Path segments that would reach an object's prototype instead of its own fields. */
const UNSAFE_SEGMENTS = new Set(["__proto__", "constructor", "prototype"]);

/** Puts `value` at a dotted `path` (`variables.input.image.file`, `0.variables.f`) of `target`. */
function placeAt(target: unknown, path: string, value: unknown): void {
  const segments = path.split(".");
  const last = segments.pop();
  let node = target;
  for (const segment of segments) {
    if (UNSAFE_SEGMENTS.has(segment) || typeof node !== "object" || node === null || !(segment in node))
      throw new MultipartRequestError(`The map names '${path}', which is not in the operations.`, 400);
    node = (node as Record<string, unknown>)[segment];
  }
  if (last === undefined || UNSAFE_SEGMENTS.has(last) || typeof node !== "object" || node === null)
    throw new MultipartRequestError(`The map names '${path}', which is not in the operations.`, 400);
  (node as Record<string, unknown>)[last] = value;
}

/** A file part held in memory, as graphql-upload's `Upload` scalar hands it to resolvers. */
function uploadOf(file: { filename: string; mimetype: string; encoding: string; bytes: Buffer }): Upload {
  const upload = new Upload();
  const fileUpload: UploadedFile = {
    filename: file.filename,
    mimetype: file.mimetype,
    encoding: file.encoding,
    bytes: file.bytes,
    createReadStream: () => Readable.from([file.bytes]),
  };
  upload.resolve(fileUpload);
  return upload;
}

/**
 * Reads a GraphQL multipart request (graphql-multipart-request-spec: an `operations` field, a `map`
 * field, then the files) into the operations object with an `Upload` at every mapped path. Files are
 * kept in memory: at most `maxFiles` x `maxFileSize` bytes, what the resolvers read into memory anyway;
 * graphql-upload's own `processRequest` spools each file to a temporary file first, whose writes, reads
 * and unlink queue on libuv's pool behind the image decoders.
 * @returns the operations (an object, or an array for a batch), once the whole body has been read.
 * @throws MultipartRequestError (status 400 for a malformed request, 413 for one over a limit).
 */
export function readGraphQLMultipart(request: IncomingMessage, limits: MultipartLimits): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: request.headers,
        limits: {
          fieldSize: limits.maxFieldSize,
          fields: 2,
          fileSize: limits.maxFileSize,
          files: limits.maxFiles,
        },
      });
    } catch (e) {
      reject(new MultipartRequestError((e as Error).message, 400));
      return;
    }
    let operations: unknown;
    let map: Map<string, string[]> | undefined;
    const files = new Map<string, Promise<Parameters<typeof uploadOf>[0]>>();
    let failed = false;
    const fail = (message: string, status: 400 | 413 = 400) => {
      if (failed) return;
      failed = true;
      request.unpipe(parser);
      // The rest of the body is read and dropped, so the answer reaches a client still sending.
      request.resume();
      reject(new MultipartRequestError(message, status));
    };
    parser.on("field", (name, value, info) => {
      if (info.valueTruncated)
        return fail(`The '${name}' field is over the limit of ${limits.maxFieldSize} bytes.`, 413);
      try {
        if (name === "operations") {
          operations = JSON.parse(value);
          if (typeof operations !== "object" || operations === null)
            fail("The 'operations' field is not a JSON object or array.");
        } else if (name === "map") {
          if (operations === undefined) return fail("The 'map' field came before 'operations'.");
          const parsed = JSON.parse(value) as unknown;
          if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
            return fail("The 'map' field is not a JSON object.");
          map = new Map();
          for (const [field, paths] of Object.entries(parsed)) {
            if (!Array.isArray(paths) || !paths.every((p) => typeof p === "string"))
              return fail(`The map entry '${field}' is not an array of paths.`);
            map.set(field, paths as string[]);
          }
          if (map.size > limits.maxFiles)
            return fail(`The request maps ${map.size} files; at most ${limits.maxFiles} are taken.`, 413);
        }
      } catch (e) {
        fail(`The '${name}' field is not JSON (${(e as Error).message}).`);
      }
    });
    parser.on("file", (name, stream, info) => {
      if (failed || !map || !map.has(name)) {
        stream.resume();
        if (!map) fail("A file came before the 'operations' and 'map' fields.");
        return;
      }
      const chunks: Buffer[] = [];
      files.set(
        name,
        new Promise((done, lost) => {
          stream.on("data", (chunk: Buffer) => chunks.push(chunk));
          stream.on("limit", () =>
            fail(
              `The file '${info.filename ?? name}' is over the limit of ${limits.maxFileSize} bytes.`,
              413,
            ),
          );
          stream.on("error", lost);
          stream.on("end", () =>
            done({
              filename: info.filename ?? "",
              mimetype: info.mimeType,
              encoding: info.encoding,
              bytes: Buffer.concat(chunks),
            }),
          );
        }),
      );
    });
    parser.on("filesLimit", () => fail(`More than ${limits.maxFiles} files in one request.`, 413));
    parser.on("fieldsLimit", () => fail("More fields than 'operations' and 'map'."));
    parser.on("error", (e: Error) => fail(e.message));
    parser.on("close", () => {
      if (failed) return;
      if (operations === undefined || !map) return fail("The 'operations' or 'map' field is missing.");
      const mapped = map;
      void (async () => {
        for (const [field, paths] of mapped) {
          const file = await files.get(field);
          if (!file) throw new MultipartRequestError(`The file '${field}' in the map is missing.`, 400);
          for (const path of paths) placeAt(operations, path, uploadOf(file));
        }
        if (!failed) resolve(operations);
      })().catch((e: Error) => fail(e.message, e instanceof MultipartRequestError ? e.status : 400));
    });
    request.on("error", (e) => fail(`The request was cut off: ${e.message}`));
    request.pipe(parser);
  });
}
