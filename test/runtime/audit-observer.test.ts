import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable, Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { waitFor } from "../../src/retry.js";
import { AuditObserver } from "../../src/runtime/audit-observer.js";
import type { AuditRow } from "../../src/runtime/audit-rows.js";

/**
 * What the observer reads of an answer, and for how long (issue 24 "Speed": the audit must cost next to nothing
 * per request). The end-to-end rows are test/runtime/audit.test.ts; here the streams are Node streams standing
 * in for the router's request, answer and client response, so what the observer listens to can be seen.
 */
function exchange(observer: AuditObserver, body: object) {
  const req = Object.assign(new Readable({ read() {} }), {
    headers: { "x-forwarded-email": "ada@example.com" },
  }) as unknown as IncomingMessage & Readable;
  const res = new Writable({
    write(_c, _e, cb) {
      cb();
    },
  }) as unknown as ServerResponse & Writable;
  observer.request(req, res, "metamcp/demo", "streamable", "sid-1");
  req.push(Buffer.from(JSON.stringify(body)));
  req.push(null);
  req.resume();
  const answer = (status: number, headers: Record<string, string>) => {
    const a = Object.assign(new Readable({ read() {} }), {
      statusCode: status,
      headers,
    }) as unknown as IncomingMessage & Readable;
    return a;
  };
  return { req, res, answer };
}

const ended = (s: Readable) => new Promise((r) => s.once("end", r));

describe("the audit observer reads only what decides a row", () => {
  it("an answer nobody waits for (a notification's 202) is not listened to", async () => {
    const rows: AuditRow[] = [];
    const observer = new AuditObserver({ sink: { record: (r) => rows.push(r) }, arguments: "off" });
    const { req, res, answer } = exchange(observer, { jsonrpc: "2.0", method: "notifications/initialized" });
    await ended(req);
    const a = answer(202, {});
    observer.response(req, a);
    expect(a.listenerCount("data")).toBe(0);
    res.end();
    expect(rows).toEqual([]);
  });

  it("an answer stream is read up to its reply, not after it; the row is made at the reply", async () => {
    const rows: AuditRow[] = [];
    const observer = new AuditObserver({ sink: { record: (r) => rows.push(r) }, arguments: "off" });
    const { req, res, answer } = exchange(observer, {
      method: "tools/call",
      params: { name: "gh__search", arguments: {} },
      jsonrpc: "2.0",
      id: 5,
    });
    await ended(req);
    const a = answer(200, { "content-type": "text/event-stream" });
    observer.response(req, a);
    a.pipe(res); // the router's pipe to the client
    expect(a.listenerCount("data")).toBe(2);
    a.push(
      `event: message\ndata: ${JSON.stringify({ method: "notifications/progress", params: {}, jsonrpc: "2.0" })}\n\n`,
    );
    a.push(`event: message\ndata: ${JSON.stringify({ result: { content: [] }, jsonrpc: "2.0", id: 5 })}\n\n`);
    await waitFor(() => (rows.length ? true : undefined), {
      timeoutMs: 2000,
      intervalMs: 5,
      what: "the row",
    });
    expect(rows[0]).toMatchObject({ method: "tools/call", server: "gh", tool: "search", outcome: "ok" });
    // Only the router's own reader is left on the stream.
    expect(a.listenerCount("data")).toBe(1);
    a.push(null);
    await ended(a);
    expect(rows).toHaveLength(1);
  });
});
