import { createReadStream, createWriteStream } from "node:fs";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { LRUCache } from "lru-cache";
import * as Minio from "minio";
import pTimeout from "p-timeout";

/** Object storage for gallery originals, over the S3 protocol (MinIO, S3, NCloud, s3rver). */
/** Largest object the minio client sends in one PUT (its default part size, 64 MiB). */
export const MAX_SINGLE_PUT_BYTES = 64 * 1024 * 1024;

export interface BlobStore {
  readonly bucket: string;
  /** Creates the bucket if missing. */
  ensureBucket(): Promise<void>;
  /** Stores `bytes` under `key`; overwrites. */
  put(key: string, bytes: Buffer, contentType: string): Promise<void>;
  /**
   * Reads an object fully.
   * @returns undefined when the key does not exist.
   */
  get(key: string): Promise<Buffer | undefined>;
  /** Size in bytes of an object, or undefined when it does not exist. */
  size(key: string): Promise<number | undefined>;
  /**
   * Uploads `length` bytes of a local file from byte `start` as one object, streamed from disk. Keep
   * `length` at most {@link MAX_SINGLE_PUT_BYTES}: the minio client sends that in one PUT, which every
   * S3-protocol server takes (the embedded s3rver has no ListMultipartUploads, which the client's multipart
   * path needs). No request timeout applies: its length grows with the bytes.
   */
  putFileRange(key: string, filePath: string, start: number, length: number): Promise<void>;
  /**
   * Downloads an object to `filePath`, streamed; `append` adds it at the end of the file.
   * @returns false when there is no such object.
   */
  getFile(key: string, filePath: string, options?: { append?: boolean }): Promise<boolean>;
  /** Deletes objects (missing ones are no error). */
  remove(keys: readonly string[]): Promise<void>;
  /**
   * A time-limited GET URL (AWS Signature V4 query string) valid for `expirySeconds` when signed. A URL
   * signed for the same key and lifetime less than half that lifetime ago is handed out again (see
   * {@link PRESIGNED_URL_CACHE_SIZE}), so every URL given has more than half its lifetime left.
   */
  presignedGetUrl(key: string, expirySeconds: number): Promise<string>;
  /** The stable `s3://<bucket>/<key>` URL stored in the database. */
  storageUrl(key: string): string;
  /** Inverse of {@link storageUrl}; undefined for URLs of another bucket or scheme. */
  keyFromStorageUrl(url: string): string | undefined;
}

/** Connection settings for an S3-compatible endpoint. */
export interface S3Connection {
  /** e.g. `http://127.0.0.1:9000` */
  endpoint: string;
  accessKey: string;
  secretKey: string;
  bucket: string;
  region: string;
  /** Longest one request (stat, get including the body, put) may take before it fails (ms). */
  requestTimeoutMs?: number;
  /**
   * Endpoint that presigned URLs name, when clients reach the store under another name than `endpoint`
   * (a proxy, a public host name). The signature covers the host, so the URL is signed for this one.
   */
  publicEndpoint?: string;
}

/** Thrown when object storage does not answer within {@link S3Connection.requestTimeoutMs}. */
export class StorageTimeoutError extends Error {
  constructor(operation: string, key: string, ms: number) {
    super(`object storage did not answer ${operation} '${key.slice(0, 100)}' within ${ms} ms`);
    this.name = "StorageTimeoutError";
  }
}

/**
 * Presigned URLs kept for reuse (about 0.5 KB each). Signing one costs about 0.1 ms of main-thread CPU
 * (four HMAC-SHA256 rounds for the signing key, one for the string to sign, in the minio client); a page
 * of hits names the same popular gallery images again and again.
 */
export const PRESIGNED_URL_CACHE_SIZE = 20_000;

const NOT_FOUND_CODES = new Set(["NoSuchKey", "NotFound", "NoSuchObject"]);

/**
 * {@link BlobStore} backed by the `minio` client.
 * The region is fixed in the client so presigning never makes a network round trip.
 */
export function createMinioBlobStore(conn: S3Connection): BlobStore {
  const clientFor = (endpoint: string) => {
    const url = new URL(endpoint);
    const useSSL = url.protocol === "https:";
    return new Minio.Client({
      endPoint: url.hostname,
      port: url.port ? Number(url.port) : useSSL ? 443 : 80,
      useSSL,
      accessKey: conn.accessKey,
      secretKey: conn.secretKey,
      region: conn.region,
      pathStyle: true,
    });
  };
  const client = clientFor(conn.endpoint);
  // Presigning is computed locally (the region is fixed), so this client never opens a connection.
  const presigner = conn.publicEndpoint ? clientFor(conn.publicEndpoint) : client;
  const prefix = `s3://${conn.bucket}/`;
  // Keyed by lifetime and key; an entry lives half the lifetime it was signed for.
  const presigned = new LRUCache<string, string>({ max: PRESIGNED_URL_CACHE_SIZE });
  const ms = conn.requestTimeoutMs ?? 15_000;
  // The minio client has no request timeout of its own; a frozen server would hang the caller.
  const limited = <T>(operation: string, key: string, run: Promise<T>) =>
    pTimeout(run, { milliseconds: ms, message: new StorageTimeoutError(operation, key, ms) });
  return {
    bucket: conn.bucket,
    async ensureBucket() {
      if (!(await limited("bucketExists", conn.bucket, client.bucketExists(conn.bucket))))
        await limited("makeBucket", conn.bucket, client.makeBucket(conn.bucket, conn.region));
    },
    async put(key, bytes, contentType) {
      await limited(
        "put",
        key,
        client.putObject(conn.bucket, key, bytes, bytes.length, { "Content-Type": contentType }),
      );
    },
    get(key) {
      let stream: Readable | undefined;
      const read = async () => {
        try {
          stream = await client.getObject(conn.bucket, key);
        } catch (e) {
          if (NOT_FOUND_CODES.has((e as { code?: string }).code ?? "")) return undefined;
          throw e;
        }
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        return Buffer.concat(chunks);
      };
      return limited("get", key, read()).catch((e) => {
        stream?.destroy();
        throw e;
      });
    },
    async size(key) {
      try {
        return (await limited("stat", key, client.statObject(conn.bucket, key))).size;
      } catch (e) {
        if (NOT_FOUND_CODES.has((e as { code?: string }).code ?? "")) return undefined;
        throw e;
      }
    },
    async putFileRange(key, filePath, start, length) {
      const body =
        length === 0 ? Buffer.alloc(0) : createReadStream(filePath, { start, end: start + length - 1 });
      await client.putObject(conn.bucket, key, body, length, {
        "Content-Type": "application/octet-stream",
      });
    },
    async getFile(key, filePath, { append = false } = {}) {
      let stream: Readable;
      try {
        stream = await client.getObject(conn.bucket, key);
      } catch (e) {
        if (NOT_FOUND_CODES.has((e as { code?: string }).code ?? "")) return false;
        throw e;
      }
      await pipeline(stream, createWriteStream(filePath, { flags: append ? "a" : "w" }));
      return true;
    },
    async remove(keys) {
      if (keys.length > 0)
        await limited("remove", keys[0] as string, client.removeObjects(conn.bucket, [...keys]));
    },
    async presignedGetUrl(key, expirySeconds) {
      const cacheKey = `${expirySeconds} ${key}`;
      const cached = presigned.get(cacheKey);
      if (cached) return cached;
      const url = await presigner.presignedGetObject(conn.bucket, key, expirySeconds);
      presigned.set(cacheKey, url, { ttl: (expirySeconds * 1000) / 2 });
      return url;
    },
    storageUrl: (key) => `${prefix}${key}`,
    keyFromStorageUrl: (u) => (u.startsWith(prefix) ? u.slice(prefix.length) : undefined),
  };
}
