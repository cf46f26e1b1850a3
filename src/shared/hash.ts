import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

/** sha256 (hex) of a file, streamed in 1 MiB chunks (each hashed in about 1 ms, so the event loop keeps turning); works for files larger than a Buffer can hold. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 }))
    hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** sha256 (hex) of bytes or a string. */
export const sha256 = (data: Buffer | string): string => createHash("sha256").update(data).digest("hex");
