import type { FileUpload } from "graphql-upload/processRequest.mjs";
import { errors, isDomainError } from "../shared/errors.js";

/**
 * A file part of a multipart request; `bytes` is set when the HTTP server has read it into memory
 * already (then no stream is read and nothing is copied).
 */
export type UploadedFile = FileUpload & { bytes?: Buffer };

/** What the `Upload` scalar resolves to: the file part of a multipart request, once it starts arriving. */
export type UploadPromise = Promise<UploadedFile>;

/**
 * An uploaded file's bytes, refusing it past `maxBytes`: the buffer the HTTP server read it into, or else
 * its stream read into memory (a 413 error on that stream, a parser's own file limit, is IMAGE_TOO_LARGE
 * here too).
 * @throws DomainError IMAGE_TOO_LARGE, BAD_USER_INPUT (the part never arrived or was cut off).
 */
export async function readUpload(upload: UploadPromise, maxBytes: number): Promise<Buffer> {
  const tooLarge = () =>
    errors.imageTooLarge(
      `The uploaded image is over the limit of ${maxBytes} bytes. Send a smaller or more compressed image.`,
      { maxBytes },
    );
  let file: UploadedFile;
  try {
    file = await upload;
  } catch (e) {
    throw errors.badInput(`The uploaded file could not be read: ${(e as Error).message}`);
  }
  if (file.bytes) {
    if (file.bytes.length > maxBytes) throw tooLarge();
    return file.bytes;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of file.createReadStream()) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) throw tooLarge();
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    if (isDomainError(e)) throw e;
    if ((e as { status?: number }).status === 413) throw tooLarge();
    throw errors.badInput(`The upload was cut off before its end: ${(e as Error).message}`);
  }
  return Buffer.concat(chunks);
}
