import { describe, expect, it } from "vitest";
import { jwtExpiryMs, RELEASE_GRACE_MS, ToolContexts } from "../../src/runtime/databricks-tools/contexts.js";

/** The router's per-request on-behalf-of tokens behind opaque handles (design §2 `ToolContexts`). */
describe("ToolContexts", () => {
  it("a handle is 256 random bits, good while its request runs and for the grace after, then gone", () => {
    let now = 0;
    const c = new ToolContexts(() => now);
    const h = c.open({ token: "t-ada", email: "ada@example.com" });
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(c.open({ token: "t-ada", email: "ada@example.com" })).not.toBe(h);
    now += 10 * 60_000; // a long request: still open
    expect(c.get(h)).toEqual({ token: "t-ada", email: "ada@example.com" });
    c.release(h);
    now += RELEASE_GRACE_MS - 1;
    expect(c.get(h)?.token).toBe("t-ada");
    now += 1;
    expect(c.get(h)).toBeUndefined();
    expect(c.get(undefined)).toBeUndefined();
    expect(c.get("f".repeat(64))).toBeUndefined();
  });

  it("never outlives a readable JWT's exp; holds at most `max`, the least recently used dropped first", () => {
    let now = 1_000_000;
    const jwt = (exp: number) => `h.${Buffer.from(JSON.stringify({ exp })).toString("base64url")}.s`;
    expect(jwtExpiryMs(jwt(2000))).toBe(2_000_000);
    expect(jwtExpiryMs("opaque-token")).toBeUndefined();
    const c = new ToolContexts(() => now, 2);
    const short = c.open({ token: jwt(1010), email: "a@x" });
    now = 1_010_000;
    expect(c.get(short)).toBeUndefined();
    const a = c.open({ token: "ta", email: "a@x" });
    const b = c.open({ token: "tb", email: "b@x" });
    expect(c.get(a)?.token).toBe("ta"); // a is now the most recent
    const d = c.open({ token: "td", email: "d@x" });
    expect(c.size).toBe(2);
    expect(c.get(b)).toBeUndefined();
    expect(c.get(a)?.token).toBe("ta");
    expect(c.get(d)?.token).toBe("td");
  });
});
