import { Agent, createServer, type IncomingHttpHeaders, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  isLoginPage,
  isPageRequest,
  safeContinuation,
  sessionCookieValue,
  stampIdentitySecret,
  withSessionCookie,
} from "../../src/runtime/identity-signin.js";
import {
  createRouter,
  defaultEndpointPath,
  dropDatabricksCredentials,
  isMetamcpCredential,
  publicLocation,
  type Router,
} from "../../src/runtime/router.js";

describe("publicLocation (the redirect safety net)", () => {
  const internal = [12008, 12009, 8080];
  const pub = "https://metamcp-dev-123.aws.databricksapps.com";
  it.each([
    ["http://localhost:12008/en/", `${pub}/en/`],
    ["https://localhost:12008/en/api-keys?x=1#h", `${pub}/en/api-keys?x=1#h`],
    ["http://127.0.0.1:12009/api/auth/callback", `${pub}/api/auth/callback`],
    ["http://0.0.0.0:8080/x", `${pub}/x`],
    ["http://[::1]:12008/y", `${pub}/y`],
  ])("%s → %s", (from, to) => expect(publicLocation(from, internal, pub)).toBe(to));
  it.each([
    "/en/login?callbackUrl=%2F", // relative: the browser resolves it on the public origin
    `${pub}/en/`, // already public
    "https://accounts.google.com/o/oauth2/auth?x=1", // external (an SSO provider)
    "http://localhost:3000/elsewhere", // a loopback port that is none of ours
  ])("leaves %s alone", (loc) => expect(publicLocation(loc, internal, pub)).toBe(loc));
  it("without a known public URL, makes an internal Location relative", () =>
    expect(publicLocation("http://localhost:12008/en/", internal, undefined)).toBe("/en/"));
  it("keeps a local public URL that is itself on loopback", () =>
    expect(publicLocation("http://127.0.0.1:8000/en/", internal, "http://127.0.0.1:8000")).toBe(
      "http://127.0.0.1:8000/en/",
    ));
});

describe("defaultEndpointPath (apps named mcp-…)", () => {
  it("maps /mcp and /mcp/ (with their query) to the endpoint, nothing else, and nothing without one", () => {
    expect(defaultEndpointPath("/mcp", "team")).toBe("/metamcp/team/mcp");
    expect(defaultEndpointPath("/mcp/?api_key=k", "team")).toBe("/metamcp/team/mcp?api_key=k");
    expect(defaultEndpointPath("/mcp-servers", "team")).toBe("/mcp-servers");
    expect(defaultEndpointPath("/mcp/x", "team")).toBe("/mcp/x");
    expect(defaultEndpointPath("/mcp", undefined)).toBe("/mcp");
  });
});

describe("Databricks credentials never reach MetaMCP", () => {
  it("recognises MetaMCP's own credentials only", () => {
    expect(isMetamcpCredential("Bearer sk_mt_abcdefghijklmnopqrstu")).toBe(true);
    expect(isMetamcpCredential("Bearer mcp_token_abc")).toBe(true);
    expect(isMetamcpCredential("Bearer dapi0123456789abcdef")).toBe(false);
    expect(isMetamcpCredential("Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig")).toBe(false);
    expect(isMetamcpCredential("Basic c2tfbXRfeDp5")).toBe(false);
    expect(isMetamcpCredential(undefined)).toBe(false);
  });
  it("drops a Databricks bearer and the forwarded access token, keeps a MetaMCP key", () => {
    const a: IncomingHttpHeaders = {
      authorization: "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig",
      "x-forwarded-access-token": "eyJ...",
      "x-api-key": "sk_mt_k",
    };
    dropDatabricksCredentials(a);
    expect(a).toEqual({ "x-api-key": "sk_mt_k" });
    const b: IncomingHttpHeaders = { authorization: "Bearer sk_mt_k" };
    dropDatabricksCredentials(b);
    expect(b).toEqual({ authorization: "Bearer sk_mt_k" });
  });
});

/**
 * The router between two stand-ins: a "Next" that redirects as Next 15 standalone does (absolute, its own
 * host and port, scheme from X-Forwarded-Proto) and an "Express" that echoes the headers it got.
 */
describe("the router on real sockets", () => {
  let next: Server;
  let express: Server;
  let router: Router;
  let url: string;
  let publicUrl: string | undefined = "https://app-1.aws.databricksapps.com";
  const listen = async (s: Server) => {
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
    return (s.address() as AddressInfo).port;
  };

  beforeAll(async () => {
    next = createServer((req, res) => {
      const proto = String(req.headers["x-forwarded-proto"] ?? "").includes("https") ? "https" : "http";
      const port = (next.address() as AddressInfo).port;
      if (req.url === "/") res.writeHead(307, { location: `${proto}://localhost:${port}/en/` });
      else if (req.url === "/external") res.writeHead(302, { location: "https://example.com/sso" });
      else res.writeHead(200, { "content-type": "text/plain" });
      res.end("next");
    });
    express = createServer((req, res) => {
      const port = (express.address() as AddressInfo).port;
      if (req.url?.startsWith("/api/auth/callback"))
        res.writeHead(302, { location: `http://127.0.0.1:${port}/api/auth/done` });
      else res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ url: req.url, headers: req.headers }));
    });
    const frontendPort = await listen(next);
    const backendPort = await listen(express);
    // This suite plays the Apps proxy from 127.0.0.1; "the identity counts only from the proxy" tries the rest.
    router = createRouter({
      backendPort,
      frontendPort,
      publicUrl: () => publicUrl,
      trustedProxyAddresses: ["127.0.0.1"],
    });
    router.ready = true;
    url = `http://127.0.0.1:${await listen(router.server)}`;
  });
  afterAll(async () => {
    await router.close(100);
    next.close();
    express.close();
  });

  it("every redirect it passes points at the public origin, a relative path, or outside", async () => {
    for (const [path, headers] of [
      ["/", {}],
      ["/", { "x-forwarded-proto": "https", "x-forwarded-host": "app-1.aws.databricksapps.com" }],
      ["/api/auth/callback/x", {}],
      ["/external", {}],
    ] as const) {
      const res = await fetch(`${url}${path}`, { headers, redirect: "manual" });
      expect(res.status).toBeGreaterThanOrEqual(300);
      const location = res.headers.get("location") ?? "";
      const origin = new URL(location, "https://relative.invalid").origin;
      expect(["https://app-1.aws.databricksapps.com", "https://example.com"]).toContain(origin);
    }
    publicUrl = undefined;
    const res = await fetch(`${url}/`, { redirect: "manual" });
    expect(res.headers.get("location")).toBe("/en/");
    publicUrl = "https://app-1.aws.databricksapps.com";
  });

  it("a front proxy's idle keep-alive connection stays usable past Node's 5 s default (no 502 on reuse)", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ status: number; socket: unknown }>((resolve, reject) => {
        const req = request(`${url}/metamcp/x`, { agent }, (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, socket: req.socket }));
        });
        req.on("error", reject);
        req.end();
      });
    const first = await get();
    // Idle as a proxy's pooled connection is between two requests: longer than Node's 5 s keep-alive.
    await new Promise((r) => setTimeout(r, 6_000));
    const second = await get();
    agent.destroy();
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(second.socket).toBe(first.socket);
  });

  it("a browser's GET /register reaches the sign-up page (frontend); a registration POST reaches the backend", async () => {
    const get = await fetch(`${url}/register`);
    expect(await get.text()).toBe("next");
    const post = await fetch(`${url}/register`, { method: "POST", body: "{}" });
    expect(((await post.json()) as { url: string }).url).toBe("/api/auth/register");
  });

  it("MetaMCP's backend gets its own key but never the caller's Databricks token", async () => {
    const res = await fetch(`${url}/metamcp/demo/mcp?api_key=sk_mt_q`, {
      headers: {
        authorization: "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig",
        "x-forwarded-access-token": "eyJ.obo",
        "x-api-key": "sk_mt_k",
        "x-forwarded-email": "someone@example.com",
      },
    });
    const seen = (await res.json()) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe("/metamcp/demo/mcp?api_key=sk_mt_q");
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers["x-forwarded-access-token"]).toBeUndefined();
    expect(seen.headers["x-api-key"]).toBe("sk_mt_k");
    expect(seen.headers["x-forwarded-email"]).toBe("someone@example.com");
    const own = await fetch(`${url}/metamcp/demo/mcp`, { headers: { authorization: "Bearer sk_mt_k" } });
    expect(((await own.json()) as { headers: Record<string, string> }).headers.authorization).toBe(
      "Bearer sk_mt_k",
    );
  });
});

describe("identity: the router vouches for the proxy's identity (docs/identity.md)", () => {
  it("drops a client's secret header; stamps ours only on requests that carry X-Forwarded-Email", () => {
    const forged: IncomingHttpHeaders = { "x-metamcp-identity-secret": "guess" };
    stampIdentitySecret(forged, "s3cret");
    expect(forged).toEqual({});
    const proxied: IncomingHttpHeaders = {
      "x-forwarded-email": "ada@example.com",
      "x-metamcp-identity-secret": "guess",
    };
    stampIdentitySecret(proxied, "s3cret");
    expect(proxied["x-metamcp-identity-secret"]).toBe("s3cret");
    const noSecret: IncomingHttpHeaders = { "x-forwarded-email": "ada@example.com" };
    stampIdentitySecret(noSecret, undefined);
    expect(noSecret["x-metamcp-identity-secret"]).toBeUndefined();
  });
  it("which requests are pages, which the login page, where a login continues", () => {
    expect(isPageRequest("GET", "/en/mcp-servers")).toBe(true);
    expect(isPageRequest("HEAD", "/")).toBe(true);
    expect(isPageRequest("POST", "/en/mcp-servers")).toBe(false);
    expect(isPageRequest("GET", "/_next/static/chunk")).toBe(false);
    expect(isPageRequest("GET", "/favicon.ico")).toBe(false);
    for (const p of ["/login", "/en/login", "/zh/login", "/en/login/"]) expect(isLoginPage(p)).toBe(true);
    for (const p of ["/en/login-help", "/en/register", "/api/auth/login"]) expect(isLoginPage(p)).toBe(false);
    expect(safeContinuation("/api-keys?x=1")).toBe("/api-keys?x=1");
    for (const bad of [
      null,
      "",
      "https://evil.example.com",
      "//evil.example.com",
      "/\\evil.example.com",
      "api-keys",
    ])
      expect(safeContinuation(bad)).toBe("/");
  });
  it("finds and replaces better-auth's session cookie, plain or __Secure-, keeping the others", () => {
    expect(sessionCookieValue("a=1; better-auth.session_token=tok.sig; b=2")).toBe("tok.sig");
    expect(sessionCookieValue("__Secure-better-auth.session_token=s.t")).toBe("s.t");
    expect(sessionCookieValue("a=1")).toBeUndefined();
    expect(
      withSessionCookie("a=1; better-auth.session_token=old; b=2", "better-auth.session_token", "new"),
    ).toBe("a=1; b=2; better-auth.session_token=new");
    expect(withSessionCookie(undefined, "__Secure-better-auth.session_token", "n")).toBe(
      "__Secure-better-auth.session_token=n",
    );
  });
});
