import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LIVE_LOGS_REFUSED, trpcProcedures } from "../../src/runtime/live-logs-guard.js";
import { createRouter, type Router } from "../../src/runtime/router.js";

/**
 * MetaMCP's Live Logs (tRPC frontend.logs.get / .clear) is one store of every person's servers' stderr and
 * connection errors, open to anyone signed in upstream (packages/trpc/src/routers/frontend/logs.ts:
 * protectedProcedure). Another signed-in person reading it, or clearing it, is the attack; the app's
 * managers keep it. The backend here answers like MetaMCP's tRPC would (200 with the logs).
 */
describe("MetaMCP's live logs are the app's managers' only", () => {
  let backend: Server;
  let router: Router;
  let url: string;
  const reached: string[] = [];
  beforeAll(async () => {
    backend = createServer((req, res) => {
      reached.push(req.url ?? "");
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify([
          {
            result: {
              data: { success: true, data: [{ serverName: "ada-github", message: "token=ghp_secret" }] },
            },
          },
        ]),
      );
    });
    await new Promise<void>((r) => backend.listen(0, "127.0.0.1", () => r()));
    const port = (backend.address() as AddressInfo).port;
    router = createRouter({
      backendPort: port,
      frontendPort: port,
      identitySecret: "s".repeat(64),
      trustedProxyAddresses: ["127.0.0.1"], // the test plays the Apps proxy
      managers: { emails: ["ops@example.com"], principals: ["6b1e8b0e-1111-4222-8333-444455556666"] },
    });
    router.ready = true;
    await new Promise<void>((r) => router.server.listen(0, "127.0.0.1", () => r()));
    url = `http://127.0.0.1:${(router.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await router.close(10);
    backend.close();
  });

  const call = (path: string, email?: string, method = "GET") =>
    fetch(`${url}${path}`, { method, headers: email ? { "x-forwarded-email": email } : {} });

  it("another signed-in person can neither read nor clear them, however the call is batched or spelled", async () => {
    for (const [path, method] of [
      ["/trpc/frontend.logs.get?batch=1&input=%7B%220%22%3A%7B%22limit%22%3A500%7D%7D", "GET"],
      ["/trpc/frontend.mcpServers.list,frontend.logs.get?batch=1&input=%7B%7D", "GET"],
      ["/trpc/frontend.mcpServers.list%2Cfrontend.logs.get?batch=1&input=%7B%7D", "GET"],
      ["/trpc/frontend.logs.clear?batch=1", "POST"],
      ["/trpc/frontend.logs.get", "GET"],
    ] as const) {
      const before = reached.length;
      const res = await call(path, "bob@example.com", method);
      const body = await res.text();
      expect(res.status, path).toBe(403);
      expect(body).toContain(LIVE_LOGS_REFUSED);
      expect(body).toContain("FORBIDDEN");
      expect(body).not.toContain("ghp_secret");
      expect(reached.length, path).toBe(before);
    }
    const batch = (await (
      await call("/trpc/frontend.mcpServers.list,frontend.logs.get?batch=1", "bob@example.com")
    ).json()) as unknown[];
    expect(batch).toHaveLength(2); // tRPC's client expects one answer per call of the batch
  });

  it("so can't a caller with no identity (a process inside the app)", async () => {
    expect((await call("/trpc/frontend.logs.get?batch=1")).status).toBe(403);
  });

  it("the app's managers (a user by email, a service principal by application id) still can; other tRPC calls pass", async () => {
    expect((await call("/trpc/frontend.logs.get?batch=1", "OPS@example.com")).status).toBe(200);
    expect(
      (await call("/trpc/frontend.logs.get?batch=1", "6b1e8b0e-1111-4222-8333-444455556666")).status,
    ).toBe(200);
    expect((await call("/trpc/frontend.mcpServers.list?batch=1", "bob@example.com")).status).toBe(200);
  });

  it("reads the procedures of a call as tRPC does", () => {
    expect(trpcProcedures("/trpc/frontend/frontend.a.b,frontend.logs.get")).toEqual([
      "frontend.a.b",
      "frontend.logs.get",
    ]);
    expect(trpcProcedures("/trpc/frontend/frontend.a%2Cfrontend.logs.get")).toEqual([
      "frontend.a",
      "frontend.logs.get",
    ]);
    expect(trpcProcedures("/api/auth/x")).toEqual([]);
  });
});
