import { describe, expect, it } from "vitest";
import { abandonOnAbort } from "../src/retry.js";

/** A wait that takes no signal itself still ends on a stop (the runtime's SIGTERM during start). */
describe("abandonOnAbort", () => {
  it("passes the value or error through while not aborted", async () => {
    const signal = new AbortController().signal;
    expect(await abandonOnAbort(Promise.resolve(7), signal)).toBe(7);
    const err = new Error("refused");
    await expect(abandonOnAbort(Promise.reject(err), signal)).rejects.toBe(err);
  });

  it("rejects with the abort's reason at once, however long the work behind it takes", async () => {
    const stop = new AbortController();
    const reason = new Error("stop requested");
    const never = new Promise<never>(() => {});
    const p = abandonOnAbort(never, stop.signal);
    stop.abort(reason);
    await expect(p).rejects.toBe(reason);
    await expect(abandonOnAbort(Promise.resolve(1), stop.signal)).rejects.toBe(reason);
  });

  it("a failure that the abort caused comes out as the abort, not as the failure", async () => {
    const stop = new AbortController();
    const reason = new Error("stop requested");
    let fail: (e: Error) => void = () => {};
    const p = abandonOnAbort(new Promise<never>((_, reject) => (fail = reject)), stop.signal);
    stop.signal.addEventListener("abort", () => fail(new Error("socket closed")));
    stop.abort(reason);
    await expect(p).rejects.toBe(reason);
  });
});
