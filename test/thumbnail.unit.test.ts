import { readFile } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { listDatasetImages } from "../src/ingest/dataset.reader.js";
import { makeThumbnail, THUMBNAIL_MAX_SIDE } from "../src/thumbnails/thumbnail.js";
import { SAMPLE_DIR } from "./support/services.js";

describe("thumbnails", () => {
  const realJpeg = async () => {
    const images = await listDatasetImages({ root: path.join(SAMPLE_DIR, "gallery") });
    const first = images.find((i) => i.path.endsWith(".jpg"));
    return readFile(first?.path ?? "");
  };

  it("serves a small plain JPEG as its own thumbnail, the same bytes", async () => {
    const bytes = await realJpeg();
    const meta = await sharp(bytes).metadata();
    expect(Math.max(meta.width ?? 0, meta.height ?? 0)).toBeLessThanOrEqual(THUMBNAIL_MAX_SIDE);
    const thumb = await makeThumbnail(bytes);
    expect(thumb.equals(bytes)).toBe(true);
  });

  it("makes a JPEG fitted inside the maximum side from a larger image, a PNG, and a rotated JPEG", async () => {
    const real = sharp(await realJpeg());
    const large = await real.clone().resize(600, 450, { fit: "fill" }).jpeg().toBuffer();
    const png = await real.clone().png().toBuffer();
    // EXIF orientation 6: shown rotated by 90 degrees, so the stored pixels are not what a browser shows.
    const rotated = await real
      .clone()
      .resize(120, 80, { fit: "fill" })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    // (sharp writes EXIF orientation only with a colour profile, so this one has both.)
    // A small JPEG with a wide-gamut profile: browsers would show it other than the re-encoded sRGB.
    const p3 = await real.clone().resize(100, 100, { fit: "fill" }).withIccProfile("p3").jpeg().toBuffer();
    // A small JPEG over 64 KiB: noise at quality 100.
    const noise = Buffer.from(Array.from({ length: 256 * 256 * 3 }, (_, i) => (i * 7919) % 251));
    const heavy = await sharp(noise, { raw: { width: 256, height: 256, channels: 3 } })
      .jpeg({ quality: 100 })
      .toBuffer();
    expect((await sharp(p3).metadata()).hasProfile).toBe(true);
    expect(heavy.length).toBeGreaterThan(64 * 1024);
    const cases = [
      { input: p3, width: 100, height: 100 },
      { input: heavy, width: 256, height: 256 },
      { input: large, width: 256, height: 192 },
      { input: png, width: (await real.metadata()).width, height: (await real.metadata()).height },
      { input: rotated, width: 80, height: 120 },
    ];
    for (const c of cases) {
      const thumb = await makeThumbnail(c.input);
      expect(thumb.equals(c.input)).toBe(false);
      const meta = await sharp(thumb).metadata();
      expect(meta).toMatchObject({ format: "jpeg", width: c.width, height: c.height });
      expect(meta.orientation ?? 1).toBe(1);
    }
  });

  it("refuses bytes that are not an image", async () => {
    await expect(makeThumbnail(Buffer.from("not an image"))).rejects.toThrow();
  });
});
