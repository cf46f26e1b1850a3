import type { FileUpload } from "graphql-upload/processRequest.mjs";
import { errors } from "../shared/errors.js";

/**
 * A file part of a multipart request, read into memory by the HTTP server (`bytes`) before the operation
 * runs; `createReadStream` is there for graphql-upload's `FileUpload` shape.
 */
export type UploadedFile = FileUpload & { bytes: Buffer };

/** What the `Upload` scalar resolves to: the file part of a multipart request. */
export type UploadPromise = Promise<UploadedFile>;

/**
 * An uploaded file's bytes, refusing it past `maxBytes`.
 * @throws DomainError IMAGE_TOO_LARGE, BAD_USER_INPUT (the part could not be read).
 */
export async function readUpload(upload: UploadPromise, maxBytes: number): Promise<Buffer> {
  let file: UploadedFile;
  try {
    file = await upload;
  } catch (e) {
    throw errors.badInput(`The uploaded file could not be read: ${(e as Error).message}`);
  }
  if (file.bytes.length > maxBytes) {
    throw errors.imageTooLarge(
      `The uploaded image is over the limit of ${maxBytes} bytes. Send a smaller or more compressed image.`,
      { maxBytes },
    );
  }
  return file.bytes;
}
