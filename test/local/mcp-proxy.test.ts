import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { beforeAll, describe, expect, it } from "vitest";
import { type LocalUserToken, localUserToken } from "../../src/local/user-token.js";
import { waitFor } from "../../src/retry.js";
import { FAKE_METAMCP_API_KEY } from "../support/fake-app-tree.js";
import {
  bearerFetch,
  mcpClient,
  rawInitialize,
  toolText as text,
  useLocalStack,
} from "../support/local-rig.js";

/**
 * A real MCP SDK client through the local Apps proxy and our router to the fake tree's MCP server (which
 * checks keys in MetaMCP's order), the way the README tells people to connect, with the stand-in playing
 * both possible Apps proxies: one that forwards the client's Authorization to the app, one that drops it.
 */
const TOKEN_TTL_S = 3;
const REQUEST_CUT_S = 3;
const STREAM_CUT_S = 4;

for (const forward of ["on", "off"] as const) {
  describe(`MCP through the local Apps proxy (Authorization forwarded: ${forward})`, () => {
    const stack = useLocalStack("mcp");
    let appUrl: string;

    /** Like a client that refreshes its Databricks token before expiry (as `connect` does). */
    const tokens = () => {
      let current: LocalUserToken | undefined;
      const minted: string[] = [];
      const get = async () => {
        if (!current || current.expiresAt.getTime() - Date.now() < 1000) {
          current = await localUserToken(stack.stateDir);
          minted.push(current.token);
        }
        return current.token;
      };
      return { get, minted };
    };

    const withHeaders = (
      token: () => Promise<string>,
      extra: Record<string, string> = { "x-api-key": FAKE_METAMCP_API_KEY },
    ) => bearerFetch(token, extra);
    const connect = (url: string, fetchFn: ReturnType<typeof withHeaders>) =>
      mcpClient(url, fetchFn, "mcp-proxy-test");
    const tokenOf = (email: string) => () => stack.tokenOf(email);
    const signIn = (email: string) => stack.signIn(email);

    beforeAll(async () => {
      ({ appUrl } = await stack.up([
        "--token-ttl",
        String(TOKEN_TTL_S),
        "--request-timeout",
        String(REQUEST_CUT_S),
        "--stream-timeout",
        String(STREAM_CUT_S),
        "--forward-authorization",
        forward,
      ]));
    });

    it("the documented way works first time: Databricks token in Authorization, MetaMCP key in X-API-Key", async () => {
      const t = tokens();
      const client = await connect(`${appUrl}/metamcp/demo/mcp`, withHeaders(t.get));
      try {
        expect((await client.listTools()).tools.map((x) => x.name).sort()).toEqual([
          "echo",
          "sleep",
          "whoami",
        ]);
        expect(text(await client.callTool({ name: "echo", arguments: { text: "hello" } }))).toBe("hello");
        const seen = JSON.parse(text(await client.callTool({ name: "whoami", arguments: {} })));
        // MetaMCP never sees the Databricks token, in either proxy mode: only its own key.
        expect(seen.authorization).toBe("absent");
        expect(seen["x-api-key"]).toBe("metamcp-key");
        expect(seen["x-forwarded-email"]).toBe("local-user@example.com");
        expect(seen["x-forwarded-host"]).toBe(new URL(appUrl).host);
        expect(seen["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
        // Our runtime set MetaMCP's own tool timeout under the proxy's 120 s cut (110 s).
        expect(seen.toolTimeoutMs).toBe(110_000);
      } finally {
        await client.close();
      }
    });

    it("two people on one public endpoint with one key: neither lists nor uses the other's session", async () => {
      await signIn("ada@example.com");
      await signIn("bob@example.com");
      const ada = new StreamableHTTPClientTransport(new URL(`${appUrl}/metamcp/demo/mcp`), {
        fetch: withHeaders(tokenOf("ada@example.com")),
      });
      const adaClient = new Client({ name: "ada", version: "1.0.0" });
      await adaClient.connect(ada);
      const bobFetch = withHeaders(tokenOf("bob@example.com"));
      try {
        const listing = await bobFetch(`${appUrl}/metamcp/health/sessions`);
        expect(listing.status).toBe(404);
        expect(await listing.text()).not.toContain(ada.sessionId!);
        const stolen = await bobFetch(`${appUrl}/metamcp/demo/mcp`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "mcp-session-id": ada.sessionId!,
            "mcp-protocol-version": "2025-06-18",
          },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 9,
            method: "tools/call",
            params: { name: "echo", arguments: { text: "hijack" } },
          }),
        });
        expect(stolen.status).toBe(404);
        expect(await stolen.text()).not.toContain("hijack");
        const seen = JSON.parse(text(await adaClient.callTool({ name: "whoami", arguments: {} })));
        expect(seen["x-forwarded-email"]).toBe("ada@example.com");
      } finally {
        await adaClient.close();
      }
    });

    it("the key as ?api_key= (endpoints that allow it) works beside the Databricks token", async () => {
      const t = tokens();
      const client = await connect(
        `${appUrl}/metamcp/demo-qp/mcp?api_key=${FAKE_METAMCP_API_KEY}`,
        withHeaders(t.get, {}),
      );
      try {
        expect(text(await client.callTool({ name: "echo", arguments: { text: "qp" } }))).toBe("qp");
      } finally {
        await client.close();
      }
    });

    it("a wrong or missing MetaMCP key is refused by MetaMCP, not mistaken for the Databricks token", async () => {
      const t = tokens();
      const wrong = await rawInitialize(
        `${appUrl}/metamcp/demo/mcp`,
        withHeaders(t.get, { "x-api-key": "sk_mt_wrong" }),
      );
      expect(wrong.status).toBe(401);
      expect(((await wrong.json()) as { error: string }).error).toBe("invalid_api_key");
      const none = await rawInitialize(`${appUrl}/metamcp/demo/mcp`, withHeaders(t.get, {}));
      expect(none.status).toBe(401);
      expect(((await none.json()) as { error: string }).error).toBe("authentication_required");
    });

    it("the legacy SSE transport works the same way", async () => {
      const t = tokens();
      const fetchFn = withHeaders(t.get);
      const client = new Client({ name: "mcp-proxy-test", version: "1.0.0" });
      await client.connect(
        new SSEClientTransport(new URL(`${appUrl}/metamcp/demo/sse`), {
          fetch: fetchFn,
          eventSourceInit: { fetch: fetchFn },
        }),
      );
      try {
        expect(text(await client.callTool({ name: "echo", arguments: { text: "sse" } }))).toBe("sse");
      } finally {
        await client.close();
      }
    });

    it("across token expiry: zero failed calls for a client that refreshes; an expired token is refused", async () => {
      const t = tokens();
      const client = await connect(`${appUrl}/metamcp/demo/mcp`, withHeaders(t.get));
      const first = await t.get();
      const failures: string[] = [];
      let calls = 0;
      let afterThird = 0;
      try {
        // Calls until the session has outlived two tokens (a third one minted and used for a few calls): the
        // condition itself, not a fixed 2 lifetimes of calling; the deadline fails a client that never renews.
        const deadline = Date.now() + TOKEN_TTL_S * 4 * 1000;
        while (afterThird < 5 && Date.now() < deadline) {
          try {
            const r = await client.callTool({ name: "echo", arguments: { text: String(calls) } });
            if (text(r) !== String(calls)) failures.push(`call ${calls}: ${JSON.stringify(r)}`);
          } catch (err) {
            failures.push(`call ${calls}: ${(err as Error).message}`);
          }
          calls++;
          if (t.minted.length >= 3) afterThird++;
        }
      } finally {
        await client.close();
      }
      expect(failures).toEqual([]);
      expect(calls).toBeGreaterThan(10);
      expect(t.minted.length).toBeGreaterThanOrEqual(3); // the session outlived at least two tokens
      expect(afterThird).toBe(5);
      // The first token is past its lifetime by now (or within a moment): the proxy refuses it.
      await waitFor(
        async () =>
          (
            await fetch(`${appUrl}/metamcp/health`, {
              headers: { authorization: `Bearer ${first}` },
              redirect: "manual",
            })
          ).status === 302
            ? true
            : undefined,
        { timeoutMs: TOKEN_TTL_S * 1000, what: "the first token to be refused once expired" },
      );
    });

    it(`a call longer than the proxy's request cut (${REQUEST_CUT_S} s here) fails; the next call works`, async () => {
      const t = tokens();
      const client = await connect(`${appUrl}/metamcp/demo/mcp`, withHeaders(t.get));
      try {
        const t0 = Date.now();
        await expect(
          client.callTool({ name: "sleep", arguments: { ms: (REQUEST_CUT_S + 2) * 1000 } }, undefined, {
            timeout: (REQUEST_CUT_S + 4) * 1000,
          }),
        ).rejects.toThrow();
        expect(Date.now() - t0).toBeGreaterThanOrEqual(REQUEST_CUT_S * 1000 - 200);
        expect(text(await client.callTool({ name: "sleep", arguments: { ms: 100 } }))).toBe("slept 100 ms");
      } finally {
        await client.close();
      }
    });

    it(`an event stream is cut after the stream limit (${STREAM_CUT_S} s here), not the request cut`, async () => {
      const t = tokens();
      const fetchFn = withHeaders(t.get);
      const transport = new SSEClientTransport(new URL(`${appUrl}/metamcp/demo/sse`), {
        fetch: fetchFn,
        eventSourceInit: { fetch: fetchFn },
      });
      const client = new Client({ name: "mcp-proxy-test", version: "1.0.0" });
      const t0 = Date.now();
      const cut = new Promise<number>((resolve) => {
        transport.onerror = () => resolve(Date.now() - t0);
      });
      await client.connect(transport);
      const after = await cut;
      await client.close();
      expect(after).toBeGreaterThanOrEqual(STREAM_CUT_S * 1000 - 200);
      expect(after).toBeLessThan(STREAM_CUT_S * 1000 + 3000);
    });
  });
}
