import pRetry from "p-retry";

/**
 * The one way to retry and to wait for something, for the CLI and the in-app runtime alike (core: it
 * imports only p-retry, a few KB in runtime/start.mjs) (p-retry underneath): exponential waits,
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
  /** Tries after the first, at most (default: no limit); then the last error is thrown. */
  retries?: number;
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

/** `fn` is given its attempt's number (1 for the first try). */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const factor = options.factor ?? 2;
  const deadline = options.deadlineMs ?? Number.POSITIVE_INFINITY;
  const start = performance.now();
  const attempt = async (n: number) => {
    try {
      return await fn(n);
    } catch (err) {
      throw err instanceof TypeError ? new Carried(err) : err;
    }
  };
  try {
    return await pRetry(attempt, {
      retries: options.retries ?? Number.POSITIVE_INFINITY,
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

export interface WaitOptions {
  timeoutMs: number;
  /** What was awaited, for the timeout's message ("the app to become healthy"). */
  what: string;
  /** Between polls (default 250 ms). */
  intervalMs?: number;
  signal?: AbortSignal;
  /**
   * Errors of `check` that only mean "not yet" (e.g. a connection refused while a server starts): polled
   * on, the last one named in the timeout's message. Any other error ends the wait at once: a poll never
   * hides a failure until its deadline.
   */
  transient?: (err: unknown) => boolean;
  /** The error a timeout throws (default: "timed out after N s waiting for <what>: <last transient error>"). */
  onTimeout?: () => Error;
}

class NotYet extends Error {
  constructor(readonly last: unknown) {
    super("not yet");
  }
}

/**
 * Polls `check` until it returns a value (not undefined) or the deadline passes, through `retry` at a
 * fixed interval. (p-wait-for 6 was tried: it leaves one abort listener per poll on its signal, which Node
 * reports as a "MaxListenersExceededWarning" on the user's terminal after ten polls.)
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined> | T | undefined,
  options: WaitOptions,
): Promise<T> {
  const interval = options.intervalMs ?? 250;
  let last: unknown;
  try {
    return await retry(
      async () => {
        let value: T | undefined;
        try {
          value = await check();
        } catch (err) {
          if (!options.transient?.(err)) throw err;
          last = err;
          throw new NotYet(err);
        }
        if (value === undefined) throw new NotYet(last);
        return value;
      },
      {
        firstWaitMs: interval,
        maxWaitMs: interval,
        factor: 1,
        deadlineMs: options.timeoutMs,
        signal: options.signal,
        retryable: (err) => err instanceof NotYet,
      },
    );
  } catch (err) {
    if (!(err instanceof NotYet)) throw err;
    if (options.onTimeout) throw options.onTimeout();
    const why = last instanceof Error ? `: ${last.message}` : "";
    throw new Error(
      `timed out after ${Math.round(options.timeoutMs / 1000)} s waiting for ${options.what}${why}`,
    );
  }
}

/** What `fetch` throws while nothing answers yet: a refused or reset connection, or its own timeout. */
export function fetchNotAnswering(err: unknown): boolean {
  const name = (err as Error | undefined)?.name;
  return (err instanceof TypeError && err.message === "fetch failed") || name === "TimeoutError";
}

/**
 * `p`, or a rejection with `signal`'s reason as soon as it aborts (the work behind `p` is abandoned; a
 * rejection of `p` after the abort is the abort's too): a wait that cannot take a signal itself still ends
 * on a stop.
 */
export function abandonOnAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(signal.aborted ? signal.reason : e);
      },
    );
  });
}
