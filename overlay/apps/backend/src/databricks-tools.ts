// Written by metamcp-databricks (overlay; imported first by the backend's index.ts, patch databricks-tools).
// NOT MetaMCP's code. Databricks' managed MCP servers (docs/databricks-tools.md): a MetaMCP server whose URL
// is on the app's own workspace (DATABRICKS_HOST) is reached through the runtime's tools gateway on loopback,
// which attaches a fresh workspace token. This process never holds one: only the gateway's per-start
// secret, which the runtime hands over on a pipe (never in any environment) and which is removed from
// process.env here at once, so no process MetaMCP starts inherits it.
//
// MetaMCP's MCP clients (the SDK's StreamableHTTP and SSE transports, its inspector) call the global
// `fetch` at call time, so wrapping it reaches every one of them with no edit to MetaMCP's client code.
// Every other origin is passed through untouched: a server on another host never sees a workspace token.
//
// Per-person servers (`#identity=user`): the runtime's router gives each request it passes here an opaque
// handle for the person's token (never the token). `databricksToolsContext`, mounted first in index.ts, takes
// it off the request and keeps it, with the route the request came in on, in an AsyncLocalStorage store for
// that request's work; the wrapper sends both to the gateway, which swaps the handle for the token. No store
// (work no request started) is `background`, which the gateway refuses for per-person servers.

import { AsyncLocalStorage } from "node:async_hooks";
import type { IncomingMessage, ServerResponse } from "node:http";

const SECRET_HEADER = "x-metamcp-gateway-secret";
const IDENTITY_HEADER = "x-metamcp-databricks-identity";
const CONTEXT_HEADER = "x-metamcp-databricks-context";
const ROUTE_HEADER = "x-metamcp-databricks-route";

/** The backend route a request came in on: who a MetaMCP connection made for it serves. */
export type DatabricksToolsRoute = "endpoint" | "openapi" | "inspector" | "namespace" | "ui";

interface RequestContext {
  handle: string | undefined;
  route: DatabricksToolsRoute;
}

const STORE_KEY = Symbol.for("metamcp-databricks.tools-context");
/** One store for every copy of this module (a second bundle of it must see the same requests). */
const requests: AsyncLocalStorage<RequestContext> = (() => {
  const g = globalThis as typeof globalThis & { [STORE_KEY]?: AsyncLocalStorage<RequestContext> };
  g[STORE_KEY] ??= new AsyncLocalStorage<RequestContext>();
  return g[STORE_KEY];
})();

/** design §2: `/metamcp/<ep>/(mcp|sse|message)` endpoint, `/metamcp/<ep>/api/…` OpenAPI, the inspectors, else UI. */
export function routeOf(url: string): DatabricksToolsRoute {
  const path = url.split("?")[0] ?? "";
  if (path.startsWith("/mcp-proxy/server/")) return "inspector";
  if (path.startsWith("/mcp-proxy/metamcp/")) return "namespace";
  if (/^\/metamcp\/[^/]+\/(mcp|sse|message)\/?$/.test(path)) return "endpoint";
  if (/^\/metamcp\/[^/]+\/(api\/|openapi)/.test(path)) return "openapi";
  return "ui";
}

/**
 * Express middleware (also a plain `(req, res, next)`), first on the app: the request's handle leaves the
 * headers at once (nothing of MetaMCP's sees or logs it) and lives in the request's async context only.
 */
export function databricksToolsContext(
  req: IncomingMessage & { originalUrl?: string },
  _res: ServerResponse,
  next: () => void,
): void {
  const raw = req.headers[CONTEXT_HEADER];
  delete req.headers[CONTEXT_HEADER];
  const handle = typeof raw === "string" && /^[0-9a-f]{64}$/.test(raw) ? raw : undefined;
  requests.run({ handle, route: routeOf(req.originalUrl ?? req.url ?? "") }, next);
}

/**
 * True for a server that runs as the person calling it (`#identity=user`): MetaMCP's idle pool must never
 * open one ahead of a caller, nor hand one made for a caller to the next session (patch databricks-tools).
 */
export function databricksNoIdle(params: { url?: string | null } | undefined): boolean {
  const url = params?.url;
  if (typeof url !== "string") return false;
  const hash = url.indexOf("#");
  return hash >= 0 && new URLSearchParams(url.slice(hash + 1)).get("identity") === "user";
}
const MCP_PATH = /^\/api\/2\.0\/mcp(\/[A-Za-z0-9_.-]+)+$/;

type Fetch = typeof globalThis.fetch;

interface Settings {
  origin: string | undefined;
  enabled: boolean;
  port: string | undefined;
  secret: string | undefined;
}

function originOf(host: string | undefined): string | undefined {
  if (!host) return undefined;
  try {
    return new URL(/^https?:\/\//i.test(host) ? host : `https://${host}`).origin;
  } catch {
    return undefined;
  }
}

function readSettings(env: NodeJS.ProcessEnv): Settings {
  const settings: Settings = {
    origin: originOf(env.DATABRICKS_HOST),
    enabled: (env.METAMCP_DATABRICKS_TOOLS ?? "on").trim().toLowerCase() !== "off",
    port: env.METAMCP_TOOLS_GATEWAY_PORT,
    secret: env.METAMCP_TOOLS_GATEWAY_SECRET,
  };
  delete env.METAMCP_TOOLS_GATEWAY_SECRET;
  return settings;
}

function urlOf(input: Parameters<Fetch>[0]): URL | undefined {
  try {
    if (typeof input === "string") return new URL(input);
    if (input instanceof URL) return input;
    if (typeof Request !== "undefined" && input instanceof Request) return new URL(input.url);
  } catch {
    // not an absolute URL: not ours to route
  }
  return undefined;
}

function refusal(status: number, message: string): Response {
  return new Response(JSON.stringify({ message }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** The fetch every part of the backend uses once this module is imported. */
export function databricksToolsFetch(original: Fetch, settings: Settings): Fetch {
  let warnedBearer = false;
  return async (input, init) => {
    const url = urlOf(input);
    if (!settings.origin || !url || url.origin !== settings.origin) return original(input, init);
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    if (!settings.enabled || !settings.port || !settings.secret) {
      console.warn(`databricks-tools: refused ${method} ${url.pathname} (Databricks tools are off)`);
      return refusal(
        403,
        "Databricks tools are turned off in this app (METAMCP_DATABRICKS_TOOLS=off): servers on the app's workspace are not reachable",
      );
    }
    // WHATWG URL parsing already folded `..`, `%2e%2e` and `\`; the gateway checks the exact spelling again.
    if (!MCP_PATH.test(url.pathname) || url.pathname.split("/").some((s) => s === "." || s === "..")) {
      console.warn(
        `databricks-tools: refused ${method} ${JSON.stringify(url.pathname.slice(0, 200))} (not /api/2.0/mcp/…) for app`,
      );
      return refusal(
        403,
        "not a Databricks managed MCP server path: only /api/2.0/mcp/… on this app's own workspace is reachable",
      );
    }
    const identity = new URLSearchParams(url.hash.slice(1)).get("identity") ?? "app";
    const headers = new Headers(input instanceof Request ? input.headers : undefined);
    for (const [name, value] of new Headers(init?.headers)) headers.set(name, value);
    if (headers.has("authorization") && !warnedBearer) {
      warnedBearer = true;
      console.warn(
        "databricks-tools: a bearer token configured for a server on the app's workspace is ignored: the gateway supplies the token",
      );
    }
    headers.delete("authorization");
    headers.delete("cookie");
    headers.set(SECRET_HEADER, settings.secret);
    headers.set(IDENTITY_HEADER, identity);
    headers.delete(CONTEXT_HEADER);
    headers.delete(ROUTE_HEADER);
    if (identity === "user") {
      const context = requests.getStore();
      headers.set(ROUTE_HEADER, context?.route ?? "background");
      if (context?.handle) headers.set(CONTEXT_HEADER, context.handle);
    }
    const target = `http://127.0.0.1:${settings.port}${url.pathname}${url.search}`;
    const request = input instanceof Request ? new Request(target, input) : target;
    return original(request, { ...init, headers, redirect: "manual" });
  };
}

const INSTALLED = Symbol.for("metamcp-databricks.tools-fetch");

/** Wraps the global fetch once (importing this module twice, or a second bundle of it, changes nothing). */
export function installDatabricksToolsFetch(env: NodeJS.ProcessEnv = process.env): void {
  const g = globalThis as typeof globalThis & { [INSTALLED]?: true };
  if (g[INSTALLED]) {
    delete env.METAMCP_TOOLS_GATEWAY_SECRET;
    return;
  }
  g[INSTALLED] = true;
  globalThis.fetch = databricksToolsFetch(globalThis.fetch.bind(globalThis), readSettings(env));
}

installDatabricksToolsFetch();
