import pRetry from "p-retry";

/**
 * The runtime's one way to retry and to wait for something (p-retry underneath): exponential waits,
 * an explicit predicate for what is worth another try (anything else is thrown at once), an optional
 * deadline (the last wait is cut to fit it, then one last try), and an AbortSignal that ends any wait at
 * once (a SIGTERM during start; then the signal's reason is thrown).
 */
export interface RetryOptions {
  firstWaitMs: number;
  maxWaitMs: number;
  /** Each wait is the previous one times this (default 2). */
  factor?: number;
  /** Give up after this long: the last error is thrown. Default: never. */
  deadlineMs?: number;
  signal?: AbortSignal;
  /** True when trying again can help (the server is not up yet); false for errors waiting cannot fix. */
  retryable(err: unknown): boolean;
  /** Before each wait, for the log line ("…; retrying in 2 s"). */
  onRetry?(err: unknown, waitMs: number): void;
}

/**
 * p-retry throws a TypeError at once whatever shouldRetry says (it takes it for a programming error);
 * our predicate decides instead, so TypeErrors travel wrapped and come out as they were thrown.
 */
class Carried extends Error {
  constructor(readonly inner: unknown) {
    super("carried");
  }
}
const unwrap = (err: unknown): unknown => (err instanceof Carried ? err.inner : err);

export async function retry<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const factor = options.factor ?? 2;
  const deadline = options.deadlineMs ?? Number.POSITIVE_INFINITY;
  const start = performance.now();
  const attempt = async () => {
    try {
      return await fn();
    } catch (err) {
      throw err instanceof TypeError ? new Carried(err) : err;
    }
  };
  try {
    return await pRetry(attempt, {
      retries: Number.POSITIVE_INFINITY,
      factor,
      minTimeout: options.firstWaitMs,
      maxTimeout: options.maxWaitMs,
      maxRetryTime: deadline,
      signal: options.signal,
      shouldRetry: ({ error, retriesConsumed }) => {
        if (!options.retryable(unwrap(error))) return false;
        const left = deadline - (performance.now() - start);
        const wait = Math.min(options.firstWaitMs * factor ** retriesConsumed, options.maxWaitMs, left);
        options.onRetry?.(unwrap(error), Math.max(0, Math.round(wait)));
        return true;
      },
    });
  } catch (err) {
    throw unwrap(err);
  }
}
