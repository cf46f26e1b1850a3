import { readFile } from "node:fs/promises";
import path from "node:path";
import { deflateSync } from "node:zlib";
import type { DatasetImage } from "../../src/ingest/dataset.reader.js";
import { SAMPLE_DIR } from "./services.js";

/**
 * A real X-SDD image (128x128 JPEG) shipped with the repository, by its path relative to samples/xsdd, e.g.
 * `gallery/steel_strip_xsdd/red_iron/2093.jpg`; present on every machine, ../shared or not.
 */
export const sampleImage = (rel: string) => readFile(path.join(SAMPLE_DIR, rel));

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * A decompression bomb: a valid PNG header declaring `width` x `height` RGB pixels with a tiny body.
 * Decoding it would need width x height x 3 bytes; a safe service refuses it from the header alone.
 */
export function pngBomb(width = 50_000, height = 50_000): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.writeUInt8(8, 8); // bit depth
  ihdr.writeUInt8(2, 9); // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.alloc(1024))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** The first `perClass` images of each class (product and defect type), in order: a real gallery that ingests in seconds. */
export function firstPerClass(images: readonly DatasetImage[], perClass: number): DatasetImage[] {
  const taken = new Map<string, number>();
  return images.filter((img) => {
    const key = `${img.productCode}/${img.defectCode ?? "good"}`;
    const n = taken.get(key) ?? 0;
    taken.set(key, n + 1);
    return n < perClass;
  });
}
