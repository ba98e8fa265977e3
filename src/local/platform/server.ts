import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";

/**
 * The core of our Databricks stand-in: a small HTTP server with routes registered by the feature
 * modules beside this file (OIDC, Lakebase credentials, Apps API, Apps proxy, log stream).
 * It serves `local` (a product feature) and the tests alike; it does not know which.
 */
export interface RecordedRequest {
  method: string;
  path: string;
  body?: unknown;
}

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body, or form fields for application/x-www-form-urlencoded, or undefined. */
  body: unknown;
}

export type RouteHandler = (ctx: RouteContext) => unknown | Promise<unknown>;
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
/** Takes a request no route matched (e.g. the Apps proxy); returns false to fall through to 404. */
export type FallbackHandler = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

interface Route {
  method: string;
  segments: string[];
  handler: RouteHandler;
}

/** An error answered in the Databricks REST error shape: `{error_code, message}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
  ) {
    super(message);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  if (chunks.length === 0) return undefined;
  const text = Buffer.concat(chunks).toString("utf8");
  const type = req.headers["content-type"] ?? "";
  if (type.includes("application/x-www-form-urlencoded"))
    return Object.fromEntries(new URLSearchParams(text));
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, "MALFORMED_REQUEST", "request body is not valid JSON");
  }
}

function match(route: Route, method: string, parts: string[]): Record<string, string> | undefined {
  if (route.method !== method || route.segments.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const seg = route.segments[i]!;
    const part = parts[i]!;
    if (seg.startsWith(":")) params[seg.slice(1)] = decodeURIComponent(part);
    else if (seg !== part) return undefined;
  }
  return params;
}

export class PlatformServer {
  readonly requests: RecordedRequest[] = [];
  private readonly routes: Route[] = [];
  private readonly upgrades: { prefix: string; handler: UpgradeHandler }[] = [];
  private fallbackHandler: FallbackHandler | undefined;
  private readonly server: Server;
  private baseUrl: string | undefined;

  private readonly scheme: "http" | "https";

  /** `tls`: serve HTTPS with this key and certificate, as Databricks serves app URLs. */
  constructor(options: { tls?: { key: string; cert: string } } = {}) {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { error_code: "INTERNAL_ERROR", message: String(err) });
        else res.destroy();
      });
    };
    this.scheme = options.tls ? "https" : "http";
    this.server = options.tls ? createTlsServer(options.tls, handler) : createServer(handler);
    this.server.on("upgrade", (req, socket, head) => {
      const pathname = new URL(req.url ?? "/", "http://x").pathname;
      const up = this.upgrades.find((u) => pathname.startsWith(u.prefix));
      if (up) up.handler(req, socket, head);
      else socket.destroy();
    });
  }

  /** `pattern` like `/api/2.0/apps/:name/deployments`. Handler returns the JSON body (200) or writes `res`. */
  route(method: string, pattern: string, handler: RouteHandler): this {
    this.routes.push({ method: method.toUpperCase(), segments: pattern.split("/").filter(Boolean), handler });
    return this;
  }

  upgrade(pathPrefix: string, handler: UpgradeHandler): this {
    this.upgrades.push({ prefix: pathPrefix, handler });
    return this;
  }

  fallback(handler: FallbackHandler): this {
    this.fallbackHandler = handler;
    return this;
  }

  get url(): string {
    if (!this.baseUrl) throw new Error("platform server is not listening");
    return this.baseUrl;
  }

  get httpServer(): Server {
    return this.server;
  }

  async listen(port = 0, host = "127.0.0.1"): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    this.baseUrl = `${this.scheme}://${host}:${addr.port}`;
    return this.baseUrl;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const method = (req.method ?? "GET").toUpperCase();
    const parts = url.pathname.split("/").filter(Boolean);
    for (const route of this.routes) {
      const params = match(route, method, parts);
      if (!params) continue;
      try {
        const body = await readBody(req);
        this.requests.push({ method, path: url.pathname, ...(body === undefined ? {} : { body }) });
        const result = await route.handler({ req, res, params, query: url.searchParams, body });
        if (!res.headersSent && !res.writableEnded) sendJson(res, 200, result ?? {});
      } catch (err) {
        if (err instanceof ApiError)
          sendJson(res, err.status, { error_code: err.errorCode, message: err.message });
        else throw err;
      }
      return;
    }
    if (this.fallbackHandler && (await this.fallbackHandler(req, res))) return;
    sendJson(res, 404, {
      error_code: "ENDPOINT_NOT_FOUND",
      message: `No API found for '${method} ${url.pathname}'`,
    });
  }
}

export function newRequestId(): string {
  return randomUUID();
}
