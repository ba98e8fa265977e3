import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CONTEXT_HEADER,
  RELEASE_GRACE_MS,
  ToolContexts,
} from "../../src/runtime/databricks-tools/contexts.js";
import { createRouter, type Router } from "../../src/runtime/router.js";

/**
 * The router's part in per-person Databricks servers (design §2): a request the Apps proxy vouches for, with
 * the person's forwarded token, reaches MetaMCP with an opaque handle only; a client's own handle header never
 * reaches it; from an address of this host (a process in the app) no handle is opened at all.
 */
const listen = async (s: Server) => {
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return (s.address() as AddressInfo).port;
};

describe("the router opens a handle per request, never passing the token", () => {
  let backend: Server;
  let frontend: Server;
  let proxied: Router;
  let fromHost: Router;
  let viaProxy: string;
  let viaHost: string;
  let now = 0;
  const contexts = new ToolContexts(() => now);

  beforeAll(async () => {
    const echo = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ headers: req.headers }));
    };
    backend = createServer(echo);
    frontend = createServer(echo);
    const backendPort = await listen(backend);
    const frontendPort = await listen(frontend);
    // Plays the Apps proxy from 127.0.0.1.
    proxied = createRouter({
      backendPort,
      frontendPort,
      trustedProxyAddresses: ["127.0.0.1"],
      toolContexts: contexts,
    });
    // 127.0.0.1 is this host's own address and not a trusted proxy: a process in the app.
    fromHost = createRouter({
      backendPort,
      frontendPort,
      ownAddresses: () => ["127.0.0.1"],
      toolContexts: contexts,
    });
    proxied.ready = fromHost.ready = true;
    viaProxy = `http://127.0.0.1:${await listen(proxied.server)}`;
    viaHost = `http://127.0.0.1:${await listen(fromHost.server)}`;
  });
  afterAll(async () => {
    await proxied.close(100);
    await fromHost.close(100);
    backend.close();
    frontend.close();
  });

  const seen = async (base: string, path: string, headers: Record<string, string>) =>
    ((await (await fetch(`${base}${path}`, { headers })).json()) as { headers: Record<string, string> })
      .headers;

  it("trusted identity + forwarded token: MetaMCP gets a fresh handle, never the token; the handle outlives the answer by the grace only", async () => {
    const h = await seen(viaProxy, "/metamcp/team/mcp", {
      "x-forwarded-email": "ada@example.com",
      "x-forwarded-access-token": "ada-obo-token-XYZ",
    });
    expect(h["x-forwarded-access-token"]).toBeUndefined();
    expect(JSON.stringify(h)).not.toContain("ada-obo-token-XYZ");
    const handle = h[CONTEXT_HEADER]!;
    expect(handle).toMatch(/^[0-9a-f]{64}$/);
    expect(contexts.get(handle)).toEqual({ token: "ada-obo-token-XYZ", email: "ada@example.com" });
    // The answer is done: released; gone after the grace.
    now += RELEASE_GRACE_MS + 1;
    expect(contexts.get(handle)).toBeUndefined();
  });

  it("a client's own handle header never reaches MetaMCP: dropped, or replaced by the request's own", async () => {
    const forged = "a".repeat(64);
    const noToken = await seen(viaProxy, "/metamcp/team/mcp", {
      "x-forwarded-email": "bob@example.com",
      [CONTEXT_HEADER]: forged,
    });
    expect(noToken[CONTEXT_HEADER]).toBeUndefined();
    const withToken = await seen(viaProxy, "/metamcp/team/mcp", {
      "x-forwarded-email": "bob@example.com",
      "x-forwarded-access-token": "bob-obo",
      [CONTEXT_HEADER]: forged,
    });
    expect(withToken[CONTEXT_HEADER]).not.toBe(forged);
    expect(contexts.get(withToken[CONTEXT_HEADER])?.email).toBe("bob@example.com");
    const page = await seen(viaProxy, "/en/", { [CONTEXT_HEADER]: forged });
    expect(page[CONTEXT_HEADER]).toBeUndefined();
  });

  it("a process in the app sending X-Forwarded-Email and a token gets no handle (so user mode is refused)", async () => {
    const before = contexts.size;
    const h = await seen(viaHost, "/metamcp/team/mcp", {
      "x-forwarded-email": "ada@example.com",
      "x-forwarded-access-token": "stolen-or-minted",
      [CONTEXT_HEADER]: "b".repeat(64),
    });
    expect(h[CONTEXT_HEADER]).toBeUndefined();
    expect(h["x-forwarded-access-token"]).toBeUndefined();
    expect(contexts.size).toBe(before);
  });
});
