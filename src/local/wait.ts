import pWaitFor from "p-wait-for";

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
}

/**
 * Polls `check` until it returns a value (not undefined) or the deadline passes (p-wait-for). The caller's
 * `what` says what was awaited.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined> | T | undefined,
  options: WaitOptions,
): Promise<T> {
  let lastError: unknown;
  return await pWaitFor<T>(
    async () => {
      try {
        const value = await check();
        return value === undefined ? false : pWaitFor.resolveWith(value);
      } catch (err) {
        if (!options.transient?.(err)) throw err;
        lastError = err;
        return false;
      }
    },
    {
      interval: options.intervalMs ?? 250,
      signal: options.signal,
      timeout: {
        milliseconds: options.timeoutMs,
        fallback: () => {
          const why = lastError instanceof Error ? `: ${lastError.message}` : "";
          throw new Error(
            `timed out after ${Math.round(options.timeoutMs / 1000)} s waiting for ${options.what}${why}`,
          );
        },
      },
    },
  );
}

/** What `fetch` throws while nothing answers yet: a refused or reset connection, or its own timeout. */
export function fetchNotAnswering(err: unknown): boolean {
  const name = (err as Error | undefined)?.name;
  return (err instanceof TypeError && err.message === "fetch failed") || name === "TimeoutError";
}
