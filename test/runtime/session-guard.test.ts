import { randomUUID } from "node:crypto";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../src/retry.js";
import { IDENTITY_SECRET_HEADER } from "../../src/runtime/identity-signin.js";
import { createPeerTrust } from "../../src/runtime/proxy-trust.js";
import { createRouter, type Router } from "../../src/runtime/router.js";
import {
  isSessionListing,
  principalOf,
  SessionTable,
  sessionIdFromEndpointEvent,
  sessionRouteOf,
  withoutSessionListings,
} from "../../src/runtime/session-guard.js";

import {
  ADA,
  as,
  BOB,
  callWith,
  connect,
  SECRET,
  startRouter,
  startUpstreamShapedBackend,
  text,
  type UpstreamShape,
} from "../support/upstream-shaped-backend.js";

/**
 * Attacks of issue "A shared gateway" on MCP sessions and on the app port, against a backend that behaves as
 * upstream MetaMCP's public endpoints do (routers/public-metamcp/streamable-http.ts and sse.ts, v2.4.22 and
 * main): ONE process-wide map per transport, sessions looked up by id alone whatever the endpoint or caller,
 * `GET /metamcp/health/sessions` listing every id, a 404 carrying `available_sessions`, a DELETE answered with
 * `remainingSessions`, Express's case-insensitive routes. Two people (Ada, Bob), each with their own private
 * endpoint and key, use real MCP SDK clients; the test plays the Apps proxy (identity headers) from 127.0.0.1.
 */

describe("MCP sessions belong to whoever opened them (real MCP SDK clients, upstream-shaped backend)", () => {
  let backend: UpstreamShape;
  let router: Router;
  let url: string;
  beforeAll(async () => {
    backend = await startUpstreamShapedBackend();
    ({ router, url } = await startRouter(backend.port));
  });
  afterAll(async () => {
    await router.close(100);
    backend.server.close();
  });

  it("the session listing is not reachable through the app port, in any spelling", async () => {
    const ada = await connect(url, ADA);
    try {
      for (const path of [
        "/metamcp/health/sessions",
        "/metamcp/HEALTH/Sessions",
        "/metamcp/health/sessions/",
      ]) {
        const res = await fetch(`${url}${path}`, { headers: as(BOB) });
        const body = await res.text();
        expect(res.status, path).toBe(404);
        expect(body).not.toContain(ada.sessionId);
      }
      // It is there at the backend (what upstream does): the router is what closes it.
      const direct = await (await fetch(`http://127.0.0.1:${backend.port}/metamcp/health/sessions`)).text();
      expect(direct).toContain(ada.sessionId);
    } finally {
      await ada.client.close();
    }
  });

  it("another person's session id is answered exactly as an unknown one, on any endpoint and spelling, and never reaches MetaMCP", async () => {
    const ada = await connect(url, ADA);
    try {
      const unknown = await callWith(url, `/metamcp/${BOB.endpoint}/mcp`, randomUUID(), as(BOB));
      const unknownBody = (await unknown.json()) as Record<string, unknown>;
      const before = backend.seen.length;
      for (const path of [
        `/metamcp/${BOB.endpoint}/mcp`, // Bob's own endpoint and key, Ada's session
        `/metamcp/${ADA.endpoint}/mcp`, // Ada's endpoint, Bob's identity
        `/metamcp/${BOB.endpoint}/MCP`, // Express's case-insensitive route
        `/metamcp/${BOB.endpoint}/mcp/`,
      ]) {
        const stolen = await callWith(url, path, ada.sessionId, as(BOB));
        const body = (await stolen.json()) as Record<string, unknown>;
        expect(stolen.status, path).toBe(404);
        expect(Object.keys(body).sort()).toEqual(Object.keys(unknownBody).sort());
        expect(body.error).toBe(unknownBody.error);
        expect(JSON.stringify(body)).not.toContain("owner");
      }
      // Ada's key but not Ada (another principal holding a copy of her key): still not hers.
      const copiedKey = await callWith(url, `/metamcp/${ADA.endpoint}/mcp`, ada.sessionId, {
        "x-forwarded-email": BOB.email,
        "x-api-key": ADA.key,
      });
      expect(copiedKey.status).toBe(404);
      expect(backend.seen.length).toBe(before); // none of it was forwarded
      // Bob cannot end Ada's session either; she goes on working.
      const del = await fetch(`${url}/metamcp/${BOB.endpoint}/mcp`, {
        method: "DELETE",
        headers: { ...as(BOB), "mcp-session-id": ada.sessionId },
      });
      expect(del.status).toBe(404);
      expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    } finally {
      await ada.client.close();
    }
  });

  it("no answer carries another session's id: a session the backend lost, and the owner's own DELETE", async () => {
    const ada = await connect(url, ADA);
    const bob = await connect(url, BOB);
    try {
      // MetaMCP lost Bob's session (its own cleanup, a restart): its 404 lists every other id.
      backend.http.delete(bob.sessionId);
      const lost = await callWith(url, `/metamcp/${BOB.endpoint}/mcp`, bob.sessionId, as(BOB));
      expect(lost.status).toBe(404);
      expect(await lost.text()).not.toContain(ada.sessionId);
      const mine = await connect(url, BOB);
      const del = await fetch(`${url}/metamcp/${BOB.endpoint}/mcp`, {
        method: "DELETE",
        headers: { ...as(BOB), "mcp-session-id": mine.sessionId },
      });
      const body = await del.text();
      expect(del.status).toBe(200);
      expect(body).toContain("Session cleaned up successfully");
      expect(body).not.toContain(ada.sessionId);
      expect(
        router.sessions.owned(mine.sessionId, principalOf(as(BOB), undefined), undefined),
      ).toBeUndefined();
      await mine.client.close();
    } finally {
      await ada.client.close();
      await bob.client.close();
    }
  });

  it("two people's own sessions keep working side by side", async () => {
    const ada = await connect(url, ADA);
    const bob = await connect(url, BOB);
    try {
      const [a, b] = await Promise.all([
        ada.client.callTool({ name: "owner", arguments: {} }),
        bob.client.callTool({ name: "owner", arguments: {} }),
      ]);
      expect(text(a)).toBe(ADA.endpoint);
      expect(text(b)).toBe(BOB.endpoint);
    } finally {
      await ada.client.close();
      await bob.client.close();
    }
  });

  it("SSE: another person's sessionId on /message is unknown; the owner's works", async () => {
    let sessionId: string | undefined;
    const client = new Client({ name: "ada-sse", version: "1.0.0" });
    const transport = new SSEClientTransport(new URL(`${url}/metamcp/${ADA.endpoint}/sse`), {
      eventSourceInit: {
        fetch: (u, init) => fetch(u, { ...init, headers: { ...(init?.headers as object), ...as(ADA) } }),
      },
      requestInit: { headers: as(ADA) },
    });
    await client.connect(transport);
    try {
      [sessionId] = [...backend.sse.keys()];
      expect(sessionId).toBeDefined();
      const before = backend.seen.length;
      for (const path of [
        `/metamcp/${BOB.endpoint}/message?sessionId=${sessionId}`,
        `/metamcp/${ADA.endpoint}/message?sessionId=${sessionId}`,
        `/metamcp/${BOB.endpoint}/Message?sessionId=${sessionId}`,
      ]) {
        const res = await fetch(`${url}${path}`, {
          method: "POST",
          headers: { ...as(BOB), "content-type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
        });
        expect(res.status, path).toBe(404);
        expect(await res.text()).toBe("Session not found");
      }
      expect(backend.seen.length).toBe(before);
      expect(text(await client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    } finally {
      await client.close();
    }
    // The client went away: upstream ends the session, and so does the router.
    await waitFor(() => (backend.sse.size === 0 ? true : undefined), {
      timeoutMs: 10_000,
      what: "SSE cleanup",
    });
    expect(router.sessions.owned(sessionId!, principalOf(as(ADA), undefined), undefined)).toBeUndefined();
  });
});

describe("<app url>/mcp on an `mcp-` app is the default endpoint (AI Playground's path)", () => {
  it("a real MCP SDK client at /mcp talks to METAMCP_DEFAULT_ENDPOINT's endpoint, its session guarded there", async () => {
    const backend = await startUpstreamShapedBackend();
    const { router, url } = await startRouter(backend.port, { defaultEndpoint: ADA.endpoint });
    try {
      const client = new Client({ name: "playground", version: "1.0.0" });
      const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
        requestInit: { headers: as(ADA) },
      });
      await client.connect(transport);
      expect(text(await client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
      // The same session by its long name is the same session; Bob's identity with Ada's key is not Ada.
      const byName = await callWith(url, `/metamcp/${ADA.endpoint}/mcp`, transport.sessionId!, as(ADA));
      expect(byName.status).toBe(200);
      const bob = await callWith(url, "/mcp", transport.sessionId!, {
        ...as(ADA),
        "x-forwarded-email": BOB.email,
      });
      expect(bob.status).toBe(404);
      await client.close();
      // Without a default endpoint, /mcp is not MetaMCP's (it goes to the frontend like any page).
      const plain = await startRouter(backend.port);
      expect(plain.router.sessions.size).toBe(0);
      await plain.router.close(10);
    } finally {
      await router.close(100);
      backend.server.close();
    }
  });
});

describe("abandoned sessions are ended in MetaMCP, and the table is bounded", () => {
  let backend: UpstreamShape;
  beforeAll(async () => {
    backend = await startUpstreamShapedBackend();
  });
  afterAll(() => {
    backend.server.close();
  });

  it("a session nobody uses past the idle limit is DELETEd at the backend as its owner; a busy one is kept", async () => {
    const { router, url } = await startRouter(backend.port, { sessionIdleMs: 600 });
    try {
      const abandoned = await connect(url, ADA);
      // Its client goes away without a DELETE (the SDK's close() only drops its streams): upstream keeps it.
      await abandoned.client.close();
      const busy = await connect(url, BOB);
      const deadline = Date.now() + 10_000;
      while (!backend.deletes.includes(abandoned.sessionId) && Date.now() < deadline) {
        await busy.client.callTool({ name: "owner", arguments: {} });
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(backend.deletes).toContain(abandoned.sessionId);
      expect(backend.http.has(abandoned.sessionId)).toBe(false);
      expect(backend.http.has(busy.sessionId)).toBe(true);
      expect(text(await busy.client.callTool({ name: "owner", arguments: {} }))).toBe(BOB.endpoint);
      // The DELETE went as Ada (her key, her identity, the router's stamp), not as anyone else.
      const del = backend.seen.find((h) => h["mcp-session-id"] === abandoned.sessionId && h["x-api-key"]);
      expect(del?.["x-forwarded-email"]).toBe(ADA.email);
      // Her client's next request is an unknown session (as after upstream's own expiry): re-initialize.
      const next = await callWith(url, `/metamcp/${ADA.endpoint}/mcp`, abandoned.sessionId, as(ADA));
      expect(next.status).toBe(404);
      await busy.client.close();
    } finally {
      await router.close(100);
    }
  });

  it("past the table's bound the least recently used session is ended, not the newest", async () => {
    const { router, url } = await startRouter(backend.port, { maxSessions: 2, maxSessionsPerPrincipal: 2 });
    try {
      // Each SDK client holds its GET stream open: the bound holds all the same.
      const first = await connect(url, ADA);
      const second = await connect(url, ADA);
      const third = await connect(url, ADA);
      await waitFor(() => (backend.deletes.includes(first.sessionId) ? true : undefined), {
        timeoutMs: 10_000,
        what: "the oldest session's DELETE",
      });
      expect(router.sessions.size).toBe(2);
      expect(text(await third.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
      expect(text(await second.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
      for (const c of [first, second, third]) await c.client.close();
    } finally {
      await router.close(100);
    }
  });
});

describe("the identity counts only when the Apps proxy sent it", () => {
  let echo: Server;
  let port: number;
  let router: Router;
  let routerPort: number;
  beforeAll(async () => {
    echo = createServer((req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(req.headers));
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    port = (echo.address() as AddressInfo).port;
    // As under `local`: only the stand-in proxy's 127.0.0.2 is trusted among this host's own addresses.
    router = createRouter({
      backendPort: port,
      frontendPort: port,
      identitySecret: SECRET,
      trustedProxyAddresses: ["127.0.0.2"],
    });
    router.ready = true;
    await new Promise<void>((r) => router.server.listen(0, "0.0.0.0", () => r()));
    routerPort = (router.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await router.close(100);
    echo.close();
  });

  const claim = (host: string, localAddress?: string) =>
    new Promise<Record<string, string>>((resolve, reject) => {
      const req = request(
        {
          host,
          port: routerPort,
          path: "/metamcp/headers",
          localAddress,
          headers: {
            "x-forwarded-email": "alice@example.com",
            "x-forwarded-user": "42@example",
            "x-forwarded-preferred-username": "alice",
            "x-forwarded-access-token": "eyJ.forged",
            [IDENTITY_SECRET_HEADER]: "guess",
          },
        },
        (res) => {
          let body = "";
          res.on("data", (c) => {
            body += c;
          });
          res.on("end", () => resolve(JSON.parse(body)));
        },
      );
      req.on("error", reject);
      req.end();
    });

  it("a process on the app's host (loopback) claiming alice gets no identity and no stamp", async () => {
    const seen = await claim("127.0.0.1");
    for (const h of [
      "x-forwarded-email",
      "x-forwarded-user",
      "x-forwarded-preferred-username",
      IDENTITY_SECRET_HEADER,
    ])
      expect(seen[h], h).toBeUndefined();
  });

  it("from one of the host's own non-loopback addresses: the same", async (ctx) => {
    const own = Object.values(os.networkInterfaces())
      .flat()
      .find((i) => i && i.family === "IPv4" && !i.internal)?.address;
    if (!own) return ctx.skip("skipped: this machine has no non-loopback IPv4 address");
    const seen = await claim(own, own);
    expect(seen["x-forwarded-email"]).toBeUndefined();
    expect(seen[IDENTITY_SECRET_HEADER]).toBeUndefined();
  });

  it("from the trusted proxy address the identity passes, with the router's own stamp", async () => {
    const seen = await claim("127.0.0.1", "127.0.0.2");
    expect(seen["x-forwarded-email"]).toBe("alice@example.com");
    expect(seen[IDENTITY_SECRET_HEADER]).toBe(SECRET);
  });

  it("peer rules: loopback, own and unspecified addresses are inside; others are the proxy", () => {
    const trust = createPeerTrust({ ownAddresses: () => ["10.1.2.3", "fe80::1"], trustedProxyAddresses: [] });
    for (const a of [
      "127.0.0.1",
      "::ffff:127.0.0.1",
      "127.8.9.10",
      "::1",
      "10.1.2.3",
      "::ffff:10.1.2.3",
      "fe80::1%eth0",
      "0.0.0.0",
      undefined,
    ])
      expect(trust.trusts(a), String(a)).toBe(false);
    for (const a of ["10.1.2.4", "::ffff:172.16.0.9", "2001:db8::7"]) expect(trust.trusts(a), a).toBe(true);
  });
});

describe("session guard parts", () => {
  it("routes that name sessions, in Express's spellings", () => {
    expect(sessionRouteOf("/metamcp/demo/mcp")).toEqual({ scope: "metamcp/demo", kind: "mcp" });
    expect(sessionRouteOf("/metamcp/demo/MCP/")).toEqual({ scope: "metamcp/demo", kind: "mcp" });
    expect(sessionRouteOf("/metamcp/my%20ep/sse")).toEqual({ scope: "metamcp/my ep", kind: "sse" });
    expect(sessionRouteOf("/metamcp/demo/message")).toEqual({ scope: "metamcp/demo", kind: "message" });
    expect(sessionRouteOf("/mcp-proxy/metamcp/0b6c/mcp")).toEqual({
      scope: "mcp-proxy/metamcp/0b6c",
      kind: "mcp",
    });
    expect(sessionRouteOf("/mcp-proxy/server/stdio")).toEqual({ scope: "mcp-proxy/server", kind: "stdio" });
    expect(sessionRouteOf("/mcp-proxy/server/message")).toEqual({
      scope: "mcp-proxy/server",
      kind: "message",
    });
    expect(sessionRouteOf("/metamcp/health/sessions")).toBeUndefined();
    expect(sessionRouteOf("/trpc/frontend/x")).toBeUndefined();
    expect(isSessionListing("/metamcp//health/sessions")).toBe(true);
    expect(isSessionListing("/metamcp/health")).toBe(false);
  });

  it("principals: the proxy's person, narrowed by a key; OAuth tokens only without a person", () => {
    const ada = principalOf({ "x-forwarded-email": "Ada@Example.com" }, undefined);
    expect(ada).toBe(principalOf({ "x-forwarded-email": "ada@example.com" }, undefined));
    expect(
      principalOf({ "x-forwarded-email": "ada@example.com", "x-api-key": "sk_mt_1" }, undefined),
    ).not.toBe(ada);
    expect(
      principalOf({ "x-forwarded-email": "ada@example.com", authorization: "Bearer mcp_token_a" }, undefined),
    ).toBe(ada);
    expect(principalOf({ authorization: "Bearer mcp_token_a" }, undefined)).not.toBe(
      principalOf({ authorization: "Bearer mcp_token_b" }, undefined),
    );
    expect(principalOf({}, new URLSearchParams("api_key=sk_mt_q"))).toBe(
      principalOf({ "x-api-key": "sk_mt_q" }, undefined),
    );
    expect(principalOf({ "x-api-key": "sk_mt_secret" }, undefined)).not.toContain("sk_mt_secret");
  });

  it("reads the SSE endpoint event and strips listings from any JSON answer", () => {
    expect(sessionIdFromEndpointEvent("event: endpoint\ndata: /metamcp/d/message?sessionId=abc-1\n\n")).toBe(
      "abc-1",
    );
    expect(sessionIdFromEndpointEvent(": ping\n\n")).toBeUndefined();
    expect(
      JSON.parse(
        withoutSessionListings('{"a":1,"available_sessions":["x"],"n":{"remainingSessions":["y"]}}')!,
      ),
    ).toEqual({
      a: 1,
      n: {},
    });
    expect(withoutSessionListings("Session not found")).toBeUndefined();
  });

  it("the table: idle sessions end, busy ones stay, the bound evicts the least recently used idle one", () => {
    let now = 0;
    const ended: string[] = [];
    const table = new SessionTable({
      idleMs: 1000,
      maxSessions: 3,
      maxPerPrincipal: 3,
      now: () => now,
      end: (s) => ended.push(s.id),
    });
    const base = { scope: "metamcp/e", principal: "u:a", transport: "streamable" as const };
    const a = table.add({ id: "a", ...base });
    table.add({ id: "b", ...base });
    now = 500;
    table.add({ id: "c", ...base });
    const done = table.begin(a); // a request of "a" in flight since 500
    now = 1600;
    expect(table.sweep()).toBe(2); // b (idle 1600 ms) and c (1100 ms); a is busy however old
    expect(ended).toEqual(["b", "c"]);
    expect(table.owned("a", "u:a", "metamcp/e")?.id).toBe("a");
    expect(table.owned("a", "u:b", "metamcp/e")).toBeUndefined();
    expect(table.owned("a", "u:a", "metamcp/other")).toBeUndefined();
    expect(table.owned("a", "u:a", undefined)?.id).toBe("a");
    table.add({ id: "d", ...base });
    table.add({ id: "e", ...base });
    table.add({ id: "f", ...base }); // a fourth: the least recently used IDLE one goes (d), not busy "a"
    expect(ended).toEqual(["b", "c", "d"]);
    expect(table.size).toBe(3);
    done();
  });

  it("one principal opening sessions in a loop ends only its own, never another's", () => {
    const ended: string[] = [];
    const table = new SessionTable({
      idleMs: 60_000,
      maxSessions: 100,
      maxPerPrincipal: 3,
      end: (s) => ended.push(s.id),
    });
    table.add({ id: "ada-1", scope: "metamcp/e", principal: "u:ada", transport: "streamable" });
    for (let i = 0; i < 50; i++)
      table.add({ id: `bob-${i}`, scope: "metamcp/e", principal: "u:bob", transport: "streamable" });
    expect(table.owned("ada-1", "u:ada", "metamcp/e")).toBeDefined();
    expect(ended).toHaveLength(47);
    expect(ended.every((id) => id.startsWith("bob-"))).toBe(true);
    expect(table.size).toBe(4);
  });
});
