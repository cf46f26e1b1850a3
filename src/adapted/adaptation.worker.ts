import { parentPort } from "node:worker_threads";
import type { AdaptationRequest } from "./adaptation.runner.js";
import { decideAdaptation } from "./cross-validation.js";
import { adaptVectors } from "./projection.js";

// The cross-validation is seconds of arithmetic: here it runs off the event loop, one request per worker,
// which exits once it has replied.
parentPort?.once("message", async (req: AdaptationRequest) => {
  try {
    if (req.kind === "decide") {
      const { kind: _kind, ...args } = req;
      parentPort?.postMessage({ ok: true, value: await decideAdaptation(args) });
    } else {
      const out = adaptVectors(req.projection, req.vectors);
      parentPort?.postMessage({ ok: true, value: out }, [out.buffer as ArrayBuffer]);
    }
  } catch (err) {
    parentPort?.postMessage({ ok: false, error: (err as Error).message });
  }
  // Ends this thread between native calls (the sessions are released): the parent never terminates it.
  process.exit(0);
});
