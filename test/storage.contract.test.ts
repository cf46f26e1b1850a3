import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BlobStore, createMinioBlobStore } from "../src/storage/blob-store.js";
import { sampleImage } from "./support/images.js";
import { startTestS3 } from "./support/services.js";

/**
 * One contract for every S3-protocol server the service supports: the embedded s3rver always, and an
 * external server (MinIO, S3) when TEST_S3_ENDPOINT + TEST_S3_ACCESS_KEY + TEST_S3_SECRET_KEY are set.
 */
function blobStoreContract(
  name: string,
  open: () => Promise<{ store: BlobStore; close: () => Promise<void> }>,
) {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ({ store, close } = await open());
      await store.ensureBucket();
    });
    afterAll(() => close());

    it("creates its bucket idempotently", async () => {
      await expect(store.ensureBucket()).resolves.toBeUndefined();
    });

    it("stores and returns the same bytes, and their size", async () => {
      const bytes = await sampleImage("gallery/steel_strip_xsdd/iron_sheet_ash/3001.jpg");
      await store.put("t/3001.jpg", bytes, "image/jpeg");
      expect((await store.get("t/3001.jpg"))?.equals(bytes)).toBe(true);
      expect(await store.size("t/3001.jpg")).toBe(bytes.length);
    });

    it("answers undefined for a missing key", async () => {
      expect(await store.get("t/missing.jpg")).toBeUndefined();
      expect(await store.size("t/missing.jpg")).toBeUndefined();
    });

    it("presigns a URL that downloads the original bytes over plain HTTP", async () => {
      const bytes = await sampleImage("held-back/steel_strip_xsdd/red_iron/2005.jpg");
      await store.put("t/2005.jpg", bytes, "image/jpeg");
      const res = await fetch(await store.presignedGetUrl("t/2005.jpg", 60));
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    });

    it("hands out a presigned URL again within half its lifetime, and signs a new one after", async () => {
      await store.put("t/reuse.txt", Buffer.from("reuse"), "text/plain");
      const first = await store.presignedGetUrl("t/reuse.txt", 2);
      expect(await store.presignedGetUrl("t/reuse.txt", 2)).toBe(first);
      // Another lifetime is another URL.
      expect(await store.presignedGetUrl("t/reuse.txt", 60)).not.toBe(first);
      await new Promise((r) => setTimeout(r, 1100));
      const later = await store.presignedGetUrl("t/reuse.txt", 2);
      expect(later).not.toBe(first);
      expect(new URL(later).searchParams.get("X-Amz-Date")).not.toBe(
        new URL(first).searchParams.get("X-Amz-Date"),
      );
      expect((await fetch(later)).status).toBe(200);
    });

    it("maps keys to s3:// storage URLs and back", () => {
      const url = store.storageUrl("images/ab/abc.png");
      expect(url).toBe(`s3://${store.bucket}/images/ab/abc.png`);
      expect(store.keyFromStorageUrl(url)).toBe("images/ab/abc.png");
      expect(store.keyFromStorageUrl("s3://other-bucket/x.png")).toBeUndefined();
    });
  });
}

blobStoreContract("embedded s3rver", async () => {
  const s3 = await startTestS3();
  return {
    store: createMinioBlobStore({ ...s3, bucket: "contract", region: "us-east-1" }),
    close: s3.stop,
  };
});

const external = process.env.TEST_S3_ENDPOINT;
if (external) {
  blobStoreContract(`external ${external}`, async () => ({
    store: createMinioBlobStore({
      endpoint: external,
      accessKey: process.env.TEST_S3_ACCESS_KEY ?? "",
      secretKey: process.env.TEST_S3_SECRET_KEY ?? "",
      bucket: `contract-${Date.now()}`,
      region: "us-east-1",
    }),
    close: async () => {},
  }));
}

describe("presigned URLs for clients that reach object storage under another name", () => {
  it("names the public endpoint, and the URL downloads the object there", async () => {
    const s3 = await startTestS3();
    try {
      // The same server under another host name: what a proxy or a public DNS name looks like to a browser.
      const publicEndpoint = s3.endpoint.replace("127.0.0.1", "localhost");
      expect(publicEndpoint).not.toBe(s3.endpoint);
      const store = createMinioBlobStore({
        ...s3,
        bucket: "public-name",
        region: "us-east-1",
        publicEndpoint,
      });
      await store.ensureBucket();
      const bytes = await sampleImage("held-back/steel_strip_xsdd/red_iron/2005.jpg");
      await store.put("t/2005.jpg", bytes, "image/jpeg");
      const url = await store.presignedGetUrl("t/2005.jpg", 60);
      expect(new URL(url).origin).toBe(new URL(publicEndpoint).origin);
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    } finally {
      await s3.stop();
    }
  });
});
