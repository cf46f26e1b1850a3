import type { TransferListItem, Worker } from "node:worker_threads";

/** How a {@link WorkerRpc} reads the worker's messages and what its calls fail with when the worker stops. */
export interface WorkerRpcOptions<Reply extends { id: number }, Value> {
  /**
   * Whether a message from the worker is a reply to a call; the others (status messages) are left to the
   * owner's own listener. Default: every message is a reply.
   */
  isReply?: (message: { id?: number }) => boolean;
  /** The value a reply resolves its call with, or the error it rejects it with. */
  unpack: (reply: Reply) => { value: Value } | { error: Error };
  /** Runs after a reply settled the call waiting for it (not for replies no call waits for). */
  afterReply?: () => void;
  /** What calls still waiting fail with when the worker exits. */
  exitError: (code: number) => Error;
  /**
   * When set, calls still waiting fail with this error at the worker's `'error'` event (an uncaught
   * exception in it), before the exit that follows; otherwise they fail at that exit, with
   * {@link exitError}.
   */
  failureError?: (err: Error) => Error;
}

/**
 * The calling side of a request/reply protocol with one worker thread: each call is posted with a new id
 * and waits until the worker's reply with that id (`{ id, ... }`) settles it; when the worker stops, every
 * call still waiting fails at once. The owner keeps the worker's lifecycle (starting, stopping, what a
 * call made after the stop gets).
 */
export class WorkerRpc<Reply extends { id: number }, Value> {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: Value) => void; reject: (e: Error) => void }>();

  constructor(
    private readonly worker: Worker,
    private readonly options: WorkerRpcOptions<Reply, Value>,
  ) {
    worker.on("message", (message: { id?: number }) => {
      if (options.isReply && !options.isReply(message)) return;
      this.settle(message as Reply);
    });
    const { failureError } = options;
    if (failureError) worker.on("error", (err) => this.failAll(failureError(err)));
    worker.on("exit", (code) => this.failAll(options.exitError(code)));
  }

  /** How many calls wait for their reply. */
  get waiting(): number {
    return this.pending.size;
  }

  /**
   * Posts `message(id)` to the worker with a new id.
   * @param transfer - buffers moved to the worker instead of copied (unusable here afterwards).
   * @returns the value of the reply with that id.
   * @throws the reply's error, or the stop's error (see {@link WorkerRpcOptions}) when the worker stops first.
   */
  call(message: (id: number) => unknown, transfer: readonly TransferListItem[] = []): Promise<Value> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(message(id), transfer);
    });
  }

  /** Fails every call still waiting with `err` (their replies, if they come, are dropped). */
  failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private settle(reply: Reply) {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    const outcome = this.options.unpack(reply);
    if ("error" in outcome) p.reject(outcome.error);
    else p.resolve(outcome.value);
    this.options.afterReply?.();
  }
}
