import { setTimeout as sleep } from "node:timers/promises";
import type { Embedder } from "../embedding/embedder.service.js";

/**
 * A duty-cycle throttle on batch embedding: after each `embedMany` that took `t` ms, waits
 * `t × (1 − share) / share` ms, so the work keeps its inference worker busy at most `share` of the wall
 * time and leaves the rest of the CPU to searches. `share()` is read at each call (a candidate promoted
 * mid-rebuild runs unthrottled from its next batch); 1 or more is no throttle. Single embeds (searches,
 * gallery edits) are never throttled.
 */
export function throttleBatches(embedder: Embedder, share: () => number): Embedder {
  return {
    ...embedder,
    async embedMany(items) {
      const t0 = performance.now();
      const out = await embedder.embedMany(items);
      const s = share();
      if (s < 1) await sleep(((performance.now() - t0) * (1 - s)) / s);
      return out;
    },
  };
}
