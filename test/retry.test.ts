import { describe, expect, it } from "vitest";
import { retry } from "../src/retry.js";

/** The runtime's one retry helper (p-retry underneath): what it retries, what it throws, how it stops. */
describe("retry", () => {
  it("retries what the predicate calls retryable, saying each wait, until it works", async () => {
    let calls = 0;
    const waits: number[] = [];
    const value = await retry(
      async () => {
        if (++calls < 4) throw new Error("not yet");
        return "done";
      },
      { firstWaitMs: 1, maxWaitMs: 3, retryable: () => true, onRetry: (_e, ms) => waits.push(ms) },
    );
    expect(value).toBe("done");
    expect(waits).toEqual([1, 2, 3]);
  });

  it("gives each try its number and stops after `retries` more, throwing the last error", async () => {
    const seen: number[] = [];
    const p = retry(
      async (attempt) => {
        seen.push(attempt);
        throw new Error(`refused ${attempt}`);
      },
      { retries: 1, firstWaitMs: 0, maxWaitMs: 0, retryable: () => true },
    );
    await expect(p).rejects.toThrow("refused 2");
    expect(seen).toEqual([1, 2]);
  });

  it("throws anything else at once, TypeErrors included, as it was thrown", async () => {
    const bug = new TypeError("x is undefined");
    let calls = 0;
    const p = retry(
      async () => {
        calls++;
        throw bug;
      },
      { firstWaitMs: 1, maxWaitMs: 1, retryable: (e) => !(e instanceof TypeError) },
    );
    await expect(p).rejects.toBe(bug);
    expect(calls).toBe(1);
  });

  it("retries a TypeError when the predicate says so (p-retry alone would not)", async () => {
    let calls = 0;
    await retry(
      async () => {
        if (++calls < 3) throw new TypeError("fetch failed");
      },
      { firstWaitMs: 1, maxWaitMs: 1, retryable: () => true },
    );
    expect(calls).toBe(3);
  });

  it("gives up at the deadline with the last error", async () => {
    const p = retry(
      async () => {
        throw new Error("still down");
      },
      { firstWaitMs: 5, maxWaitMs: 5, deadlineMs: 30, retryable: () => true },
    );
    await expect(p).rejects.toThrow("still down");
  });

  it("an abort ends a long wait at once", async () => {
    const stop = new AbortController();
    let calls = 0;
    const p = retry(
      async () => {
        calls++;
        throw new Error("down");
      },
      { firstWaitMs: 600_000, maxWaitMs: 600_000, signal: stop.signal, retryable: () => true },
    );
    setImmediate(() => stop.abort(new Error("SIGTERM")));
    await expect(p).rejects.toThrow("SIGTERM");
    expect(calls).toBe(1);
  });
});
