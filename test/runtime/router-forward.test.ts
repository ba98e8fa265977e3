import { randomUUID } from "node:crypto";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { waitFor } from "../../src/retry.js";
import { AuditObserver } from "../../src/runtime/audit-observer.js";
import type { AuditRow } from "../../src/runtime/audit-rows.js";
import { createRouter, type Router } from "../../src/runtime/router.js";

/**
 * How the router forwards plain HTTP (http-proxy-3 and our hooks on it), on real sockets:
 * what passes, what does not, streams unbuffered, cuts passed on. A scripted backend stands in for MetaMCP's
 * Express: each path does one thing, and the test waits on what the backend saw, never on a clock.
 */

interface Seen {
  headers: IncomingHttpHeaders;
  url: string;
  body: Buffer;
  closedEarly: boolean;
}

const listen = async (s: Server) => {
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return (s.address() as AddressInfo).port;
};

/** A request through the router, read to its end or its error. */
function call(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<{ status: number; message: string; headers: IncomingHttpHeaders; body: string; error?: string }> {
  return new Promise((resolve, reject) => {
    const r = request(url, { method: options.method ?? "GET", headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      const done = (error?: string) =>
        resolve({
          status: res.statusCode ?? 0,
          message: res.statusMessage ?? "",
          headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8"),
          error,
        });
      res.on("end", () => done());
      res.on("error", (e) => done(e.message));
      res.on("aborted", () => done("aborted"));
    });
    r.on("error", reject);
    r.end(options.body);
  });
}

describe("the router's forwarding core", () => {
  let backend: Server;
  let wss: WebSocketServer;
  let router: Router;
  let url: string;
  let port: number;
  const seen: Seen[] = [];
  const rows: AuditRow[] = [];
  /** Released by the test: the SSE path waits on it between its two events. */
  const gates: (() => void)[] = [];
  const open = new Map<string, ServerResponse>();

  beforeAll(async () => {
    backend = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      const s: Seen = { headers: req.headers, url: req.url ?? "", body: Buffer.alloc(0), closedEarly: false };
      seen.push(s);
      res.once("close", () => {
        if (!res.writableFinished) s.closedEarly = true;
      });
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        s.body = Buffer.concat(chunks);
        const path = (req.url ?? "").split("?")[0];
        if (path === "/metamcp/echo") {
          res.writeHead(201, "Made It", {
            "content-type": "application/json",
            "set-cookie": ["a=1; Path=/", "b=2; Path=/"],
            connection: "keep-alive",
            "keep-alive": "timeout=5",
            "x-backend": "yes",
          });
          res.end(JSON.stringify({ url: req.url, headers: req.headers, bytes: s.body.length }));
        } else if (path === "/metamcp/events") {
          // Two events with the test between them: the second is written only once the first has arrived.
          res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
          res.write('data: {"n":1}\n\n');
          gates.push(() => res.end('data: {"n":2}\n\n'));
        } else if (path === "/metamcp/hang") {
          res.writeHead(200, { "content-type": "text/event-stream" });
          res.write(": open\n\n");
          open.set(new URL(req.url ?? "", "http://x").searchParams.get("id") ?? "", res);
        } else if (path === "/metamcp/drop/mcp") {
          // A backend that dies mid-answer: the answer's headers and a first event, then the socket is gone.
          res.writeHead(200, { "content-type": "text/event-stream", "mcp-session-id": randomUUID() });
          res.write(": started\n\n");
          setImmediate(() => req.socket.destroy());
        } else {
          res.writeHead(404);
          res.end();
        }
      });
    });
    wss = new WebSocketServer({ server: backend });
    wss.on("connection", (ws, req) => {
      ws.send(JSON.stringify({ url: req.url, email: req.headers["x-forwarded-email"] ?? null }));
      ws.on("message", (m) => ws.send(`echo:${m.toString()}`));
    });
    const backendPort = await listen(backend);
    router = createRouter({
      backendPort,
      frontendPort: backendPort,
      audit: new AuditObserver({ sink: { record: (row) => rows.push(row) }, arguments: "off" }),
    });
    router.ready = true;
    port = await listen(router.server);
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    for (const g of gates.splice(0)) g();
    await router.close(100);
    wss.close();
    backend.closeAllConnections();
    await new Promise((r) => backend.close(r));
  });

  it("passes method, path, query, Host, X-Forwarded-* and the body unchanged; adds no forwarding headers", async () => {
    const body = Buffer.alloc(3 * 1024 * 1024, "x");
    const res = await call(`${url}/metamcp/echo?a=1&b=%2F`, {
      method: "PUT",
      headers: {
        host: "app-1.aws.databricksapps.com",
        "x-forwarded-host": "app-1.aws.databricksapps.com",
        "x-forwarded-proto": "https",
        "x-forwarded-for": "203.0.113.9",
        "content-type": "application/octet-stream",
      },
      body,
    });
    const got = JSON.parse(res.body) as { url: string; headers: IncomingHttpHeaders; bytes: number };
    expect(got.url).toBe("/metamcp/echo?a=1&b=%2F");
    expect(got.bytes).toBe(body.length);
    expect(got.headers.host).toBe("app-1.aws.databricksapps.com");
    expect(got.headers["x-forwarded-host"]).toBe("app-1.aws.databricksapps.com");
    expect(got.headers["x-forwarded-proto"]).toBe("https");
    expect(got.headers["x-forwarded-for"]).toBe("203.0.113.9");
    expect(got.headers["x-forwarded-port"]).toBeUndefined();
  });

  it("passes status, status text and every Set-Cookie; the backend's hop-by-hop headers stay behind", async () => {
    const res = await call(`${url}/metamcp/echo`);
    expect(res.status).toBe(201);
    expect(res.message).toBe("Made It");
    expect(res.headers["set-cookie"]).toEqual(["a=1; Path=/", "b=2; Path=/"]);
    expect(res.headers["x-backend"]).toBe("yes");
    // The router's own keep-alive (65 s, longer than a front proxy's idle cut), not the backend's 5 s.
    expect(res.headers["keep-alive"]).not.toBe("timeout=5");
  });

  it("a client's hop-by-hop headers are not passed on, nor headers its Connection names", async () => {
    const res = await call(`${url}/metamcp/echo`, {
      headers: {
        connection: "keep-alive, x-hop",
        "x-hop": "secret-for-the-next-hop-only",
        "keep-alive": "timeout=1",
        "proxy-connection": "keep-alive",
        te: "trailers",
      },
    });
    const got = JSON.parse(res.body) as { headers: IncomingHttpHeaders };
    for (const h of ["x-hop", "keep-alive", "proxy-connection", "te"])
      expect(got.headers[h], h).toBeUndefined();
  });

  it("SSE events arrive one by one, unbuffered: the second is written only after the first arrived", async () => {
    const events: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      const r = request(`${url}/metamcp/events`, (res) => {
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          events.push(c);
          // The backend holds the second event until the test has the first.
          if (events.join("").includes('{"n":1}')) gates.shift()?.();
        });
        res.on("end", () => resolve());
      });
      r.on("error", reject);
      r.end();
    });
    await done;
    expect(events.join("")).toBe('data: {"n":1}\n\ndata: {"n":2}\n\n');
  });

  it("a client that goes away ends the backend's request too", async () => {
    const id = randomUUID();
    const r = request(`${url}/metamcp/hang?id=${id}`, (res) => {
      res.once("data", () => r.destroy());
    });
    r.on("error", () => {});
    r.end();
    const s = await waitFor(() => seen.find((x) => x.url.includes(id) && x.closedEarly), {
      timeoutMs: 5000,
      intervalMs: 10,
      what: "the backend's request to close",
    });
    expect(s.closedEarly).toBe(true);
  });

  it("a backend that drops mid-answer: the client's answer is cut, not left hanging, and the audit says `cut`", async () => {
    const res = await call(`${url}/metamcp/drop/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "x-forwarded-email": "cutter@example.com",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "s__slow" } }),
    });
    expect(res.status).toBe(200);
    expect(res.error).toBeDefined();
    const row = await waitFor(() => rows.find((x) => x.tool === "slow"), {
      timeoutMs: 5000,
      intervalMs: 10,
      what: "the cut call's row",
    });
    expect(row.outcome).toBe("cut");
  }, 15_000);

  it("a backend that does not answer: 502, said plainly", async () => {
    const dead = createServer();
    const deadPort = await listen(dead);
    await new Promise((r) => dead.close(r));
    const r2 = createRouter({ backendPort: deadPort, frontendPort: deadPort });
    r2.ready = true;
    const p = await listen(r2.server);
    try {
      const res = await call(`http://127.0.0.1:${p}/metamcp/anything`);
      expect(res.status).toBe(502);
      expect(res.body).toMatch(/MetaMCP is not answering/);
    } finally {
      await r2.close(100);
    }
  });

  it("WebSocket upgrades pass both ways; identity headers from this host are dropped first", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/metamcp/socket`, {
      headers: { "x-forwarded-email": "mallory@example.com" },
    });
    const messages: string[] = [];
    ws.on("message", (m) => {
      messages.push(m.toString());
      if (messages.length === 1) ws.send("hi");
    });
    await waitFor(() => (messages.length >= 2 ? true : undefined), {
      timeoutMs: 5000,
      intervalMs: 10,
      what: "two WebSocket messages",
    });
    ws.close();
    expect(JSON.parse(messages[0]!)).toEqual({ url: "/metamcp/socket", email: null });
    expect(messages[1]).toBe("echo:hi");
  });

  it("frees the backend connection for reuse after each answer (keep-alive to the child)", async () => {
    const sockets = new Set<Socket>();
    const onConnection = (s: Socket) => sockets.add(s);
    backend.on("connection", onConnection);
    try {
      for (let i = 0; i < 5; i++) await call(`${url}/metamcp/echo`);
      expect(sockets.size).toBeLessThanOrEqual(1);
    } finally {
      backend.off("connection", onConnection);
    }
  });
});
