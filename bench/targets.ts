/** Speed and scale targets of the service that the benchmark tables are read against. */
export const TARGETS = {
  /** End-to-end ingestion, images/s. */
  ingestImagesPerSecond: 150,
  /** searchSimilar over HTTP, p99 at concurrency 4, 1M gallery (ms). */
  httpP99MsAtC4: 50,
  /** Search-only recall@10 against exact search. */
  recallAt10: 0.95,
  /** Startup with a persisted 1M index (s). */
  startupSeconds1M: 5,
  /** Index memory per image (bytes). */
  indexBytesPerImage: 1500,
  /** Searches that may fail on a replica while it downloads and swaps in a new index version. */
  failedSearchesDuringSwap: 0,
  /** Longest event-loop delay one request may cause another (ms). */
  eventLoopDelayMs: 10,
  /** searchSimilar over HTTP: p99 at concurrency 1 at most this many times its p50. */
  httpP99OverP50AtC1: 2,
  /** searchSimilar over HTTP at concurrency 16, requests/s on 2 cores. */
  httpRequestsPerSecondAtC16: 150,
  /** Event-loop delay under concurrency-16 HTTP load: p99 and max (ms). */
  eventLoopP99MsAtC16: 5,
  eventLoopMaxMsAtC16: 15,
  /** A rebuild of both indexes of a 10,000-image gallery, embeddings cached, adapted space fitted (s). */
  rebuild10kSeconds: 30,
} as const;
