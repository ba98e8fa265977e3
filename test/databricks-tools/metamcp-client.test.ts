import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mintingTokens } from "../../src/connect/token-source.js";
import { MetaMcpClient } from "../../src/databricks-tools/metamcp.js";
import { isUserError } from "../../src/errors.js";

/**
 * The tRPC client's answers to what an app can say (a real HTTP server on 127.0.0.1 in the app's place): the
 * sentences and exit codes a person gets for a refused policy, a refused token, no MetaMCP session, or an app
 * that is not MetaMCP.
 */
describe("MetaMCP's tRPC through the proxy, as the person", () => {
  let server: Server;
  let appUrl: string;
  let handler: (req: IncomingMessage, res: ServerResponse) => void;
  let minted: number;
  const seen: { path: string; authorization?: string; cookie?: string }[] = [];
  const tokens = () =>
    mintingTokens("the test's tokens", async () => ({
      token: `t${++minted}`,
      expiresAt: Date.now() + 3600_000,
    }));
  const trpcError = (res: ServerResponse, status: number, code: string, message: string) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify([{ error: { message, code: -32003, data: { code, httpStatus: status } } }]));
  };
  const signedIn = (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === "/") {
      // Our router's answer to a page request: the page, with MetaMCP's new session cookie.
      res.writeHead(307, {
        location: "/en",
        "set-cookie": ["__Secure-better-auth.session_token=sess.sig; Path=/; HttpOnly; Secure", "other=1"],
      });
      res.end();
      return true;
    }
    return false;
  };
  const create = (client: MetaMcpClient) =>
    client.createServer({
      name: "databricks-sql",
      description: "d",
      url: "https://ws/api/2.0/mcp/sql",
      user_id: undefined,
    });

  beforeEach(async () => {
    minted = 0;
    seen.length = 0;
    server = createServer((req, res) => {
      seen.push({
        path: req.url ?? "",
        authorization: req.headers.authorization,
        cookie: req.headers.cookie,
      });
      handler(req, res);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    appUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("signs in with a page request, then calls tRPC with the token and MetaMCP's session cookie", async () => {
    handler = (req, res) => {
      if (signedIn(req, res)) return;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify([
          {
            result: {
              data: { success: true, data: { uuid: "u1", name: "databricks-sql", url: "x", user_id: "me" } },
            },
          },
        ]),
      );
    };
    const row = await create(new MetaMcpClient(appUrl, tokens()));
    expect(row.uuid).toBe("u1");
    expect(seen.map((s) => s.path)).toEqual(["/", "/trpc/frontend.mcpServers.create?batch=1"]);
    expect(seen[1]).toMatchObject({
      authorization: "Bearer t1",
      cookie: "__Secure-better-auth.session_token=sess.sig",
    });
  });

  it("FORBIDDEN (the app-identity policy): exit 2, MetaMCP's words and what to do", async () => {
    handler = (req, res) => {
      if (signedIn(req, res)) return;
      trpcError(
        res,
        403,
        "FORBIDDEN",
        "Only the app's managers may add servers that run as the app's service principal.",
      );
    };
    const err = await create(new MetaMcpClient(appUrl, tokens())).catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    expect(err).toMatchObject({ code: "forbidden", exitCode: 2 });
    expect((err as Error).message).toBe(
      "MetaMCP refused mcpServers.create: Only the app's managers may add servers that run as the app's service principal.",
    );
    expect((err as { hint: string }).hint).toMatch(/METAMCP_DATABRICKS_APP_IDENTITY/);
  });

  it("a token the proxy refuses (its login redirect, off the app's origin): one fresh token, then 'not signed in'", async () => {
    handler = (_req, res) => {
      res.writeHead(302, { location: "https://login.example/oidc/authorize" });
      res.end();
    };
    const err = await create(new MetaMcpClient(appUrl, tokens())).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "not_signed_in", exitCode: 4 });
    expect(seen.map((s) => s.authorization)).toEqual(["Bearer t1", "Bearer t2"]);
  });

  it("no MetaMCP session (the identity sign-in refused): says so and what to do", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<html>login</html>");
    };
    const err = await create(new MetaMcpClient(appUrl, tokens())).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "not_signed_in" });
    expect((err as Error).message).toMatch(/MetaMCP did not open a session for the test's tokens/);
  });

  it("tRPC's UNAUTHORIZED is the app's own answer, not the proxy's: no token retry", async () => {
    handler = (req, res) => {
      if (signedIn(req, res)) return;
      trpcError(res, 401, "UNAUTHORIZED", "You must be logged in to access this resource");
    };
    const err = await new MetaMcpClient(appUrl, tokens()).listServers().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "not_signed_in" });
    expect((err as Error).message).toMatch(/did not take the session for mcpServers\.list/);
    expect(minted).toBe(1);
  });

  it("an app that is not MetaMCP: says so", async () => {
    handler = (req, res) => {
      if (signedIn(req, res)) return;
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("Not Found");
    };
    const err = await create(new MetaMcpClient(appUrl, tokens())).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "metamcp_unexpected" });
  });
});
