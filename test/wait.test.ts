import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../src/local/postgres.js";
import { fetchNotAnswering, waitFor } from "../src/retry.js";

/** One way to poll: what a check throws ends the wait at once unless the caller named it "not yet". */
describe("waitFor", () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((r) => server?.close(r) ?? r(undefined));
    server = undefined;
  });

  it("an error the check throws ends the wait at once, not at the deadline", {
    timeout: 30_000,
  }, async () => {
    let polls = 0;
    const err = await waitFor(
      () => {
        polls++;
        throw new Error("the app exited (code 1)");
      },
      { timeoutMs: 10 * 60_000, what: "the app", transient: fetchNotAnswering },
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe("the app exited (code 1)");
    expect(polls).toBe(1);
  });

  it("polls on through a refused connection until a real server answers", { timeout: 60_000 }, async () => {
    const port = await freePort();
    let polls = 0;
    const body = await waitFor(
      async () => {
        polls++;
        // Nothing listens for the first polls: fetch is refused (transient); then the server comes up.
        if (polls === 3) {
          server = createServer((_req, res) => res.end("ok"));
          await new Promise<void>((r) => server!.listen(port, "127.0.0.1", r));
        }
        const res = await fetch(`http://127.0.0.1:${port}/`);
        return res.ok ? await res.text() : undefined;
      },
      { timeoutMs: 50_000, intervalMs: 20, what: "the server", transient: fetchNotAnswering },
    );
    expect(body).toBe("ok");
    expect(polls).toBeGreaterThanOrEqual(3);
  });

  it("at the deadline, names what it waited for and the last transient error", {
    timeout: 30_000,
  }, async () => {
    const port = await freePort();
    const err = await waitFor(() => fetch(`http://127.0.0.1:${port}/`).then(() => true), {
      timeoutMs: 300,
      intervalMs: 20,
      what: "nothing listening",
      transient: fetchNotAnswering,
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe("timed out after 0 s waiting for nothing listening: fetch failed");
  });

  it("a stop request ends the wait with its reason", { timeout: 30_000 }, async () => {
    const stop = new AbortController();
    const waiting = waitFor(() => undefined, { timeoutMs: 60_000, what: "never", signal: stop.signal });
    stop.abort(new Error("stopped by SIGTERM"));
    await expect(waiting).rejects.toThrow("stopped by SIGTERM");
  });

  it("leaves no listener behind per poll: many polls on one long-lived signal raise no Node warning", {
    timeout: 30_000,
  }, async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on("warning", onWarning);
    try {
      const stop = new AbortController();
      for (let round = 0; round < 3; round++) {
        let polls = 0;
        await waitFor(() => (++polls >= 25 ? polls : undefined), {
          timeoutMs: 20_000,
          intervalMs: 1,
          what: "25 polls",
          signal: stop.signal,
        });
      }
      // Node emits process warnings on the next tick.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings).toEqual([]);
  });
});
