import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DatabricksError } from "../../src/errors.js";
import { type IssuedToken, WorkspaceTokenKeeper } from "../../src/runtime/databricks-tools/tokens.js";

/**
 * The app's workspace token for Databricks tools (design §2 WorkspaceTokenKeeper), on a fake clock: renewed
 * in the background at 60 % of its lifetime so no call waits on the token endpoint; a failing renewal keeps
 * the current token in service until it expires; after that, the reason, never a stale token.
 */
const HOUR = 3600_000;

function fakeIssuer() {
  let n = 0;
  const calls: number[] = [];
  let failing: Error | undefined;
  const issue = async (): Promise<IssuedToken> => {
    calls.push(Date.now());
    if (failing) throw failing;
    n++;
    return { token: `tok-${n}`, expiresAt: new Date(Date.now() + HOUR) };
  };
  return {
    issue,
    calls,
    fail(err: Error | undefined) {
      failing = err;
    },
  };
}

function capture() {
  const lines: string[] = [];
  return {
    lines,
    log: {
      info: (m: string) => lines.push(`info ${m}`),
      warn: (m: string) => lines.push(`warn ${m}`),
      error: (m: string) => lines.push(`error ${m}`),
    },
  };
}

let keeper: WorkspaceTokenKeeper | undefined;
beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"], now: new Date("2026-12-07T12:00:00Z") });
});
afterEach(() => {
  keeper?.stop();
  keeper = undefined;
  vi.useRealTimers();
});

describe("WorkspaceTokenKeeper", () => {
  it("has no token before the first one came, then serves it; renews at 60 % of the lifetime, ahead of any call", async () => {
    const issuer = fakeIssuer();
    const { log } = capture();
    keeper = new WorkspaceTokenKeeper(issuer.issue, log);
    expect(keeper.current()).toEqual({
      ok: false,
      reason: expect.stringMatching(/not available yet/),
    });
    keeper.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(keeper.current()).toEqual({ ok: true, token: "tok-1" });
    await vi.advanceTimersByTimeAsync(0.6 * HOUR - 1000);
    expect(keeper.current()).toEqual({ ok: true, token: "tok-1" });
    expect(issuer.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(keeper.current()).toEqual({ ok: true, token: "tok-2" });
    expect(issuer.calls).toHaveLength(2);
    // And again 60 % into the new token's life: several expiries, never a gap.
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(0.6 * HOUR);
      expect(keeper.current()).toEqual({ ok: true, token: `tok-${3 + i}` });
    }
    expect(keeper.renewals).toBe(6);
  });

  it("a failing renewal keeps serving the current token, retrying with backoff, and says so; it recovers by itself", async () => {
    const issuer = fakeIssuer();
    const { log, lines } = capture();
    keeper = new WorkspaceTokenKeeper(issuer.issue, log);
    keeper.start();
    await vi.advanceTimersByTimeAsync(0);
    issuer.fail(
      new DatabricksError("workspace_unreachable", "service principal token: cannot reach the workspace"),
    );
    await vi.advanceTimersByTimeAsync(0.6 * HOUR + 60_000);
    expect(issuer.calls.length).toBeGreaterThan(3);
    expect(keeper.current()).toEqual({ ok: true, token: "tok-1" });
    expect(lines.join("\n")).toMatch(
      /renewal failed.*cannot reach the workspace.*still serving the current one/,
    );
    issuer.fail(undefined);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(keeper.current()).toEqual({ ok: true, token: "tok-2" });
    expect(lines.at(-1)).toMatch(/renewed/);
  });

  it("past expiry without a renewal: the reason, never the expired token; a later renewal serves again", async () => {
    const issuer = fakeIssuer();
    const { log } = capture();
    keeper = new WorkspaceTokenKeeper(issuer.issue, log);
    keeper.start();
    await vi.advanceTimersByTimeAsync(0);
    issuer.fail(new DatabricksError("sp_auth_refused", "the workspace refused the app's service principal"));
    await vi.advanceTimersByTimeAsync(HOUR);
    const now = keeper.current();
    expect(now.ok).toBe(false);
    if (!now.ok) {
      expect(now.reason).toMatch(/expired at 2026-12-07T13:00:00.000Z/);
      expect(now.reason).toMatch(/refused the app's service principal/);
      expect(now.reason).not.toContain("tok-1");
    }
    issuer.fail(undefined);
    await vi.advanceTimersByTimeAsync(16_000);
    expect(keeper.current()).toEqual({ ok: true, token: "tok-2" });
  });

  it("a first token that cannot be had is retried in the background; the reason is served meanwhile", async () => {
    const issuer = fakeIssuer();
    issuer.fail(new DatabricksError("workspace_unreachable", "cannot reach the workspace"));
    const { log } = capture();
    keeper = new WorkspaceTokenKeeper(issuer.issue, log);
    keeper.start();
    await vi.advanceTimersByTimeAsync(5000);
    const now = keeper.current();
    expect(now).toEqual({ ok: false, reason: expect.stringMatching(/not available yet.*cannot reach/) });
    issuer.fail(undefined);
    await vi.advanceTimersByTimeAsync(16_000);
    expect(keeper.current()).toEqual({ ok: true, token: "tok-1" });
  });

  it("stop ends renewals and retries", async () => {
    const issuer = fakeIssuer();
    const { log } = capture();
    keeper = new WorkspaceTokenKeeper(issuer.issue, log);
    keeper.start();
    await vi.advanceTimersByTimeAsync(0);
    keeper.stop();
    await vi.advanceTimersByTimeAsync(3 * HOUR);
    expect(issuer.calls).toHaveLength(1);
  });
});
