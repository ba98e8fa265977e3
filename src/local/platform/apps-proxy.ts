import { randomUUID } from "node:crypto";
import { Agent, type ClientRequest, type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { createProxyServer } from "http-proxy-3";
import { WebSocketServer } from "ws";
import type { PlatformServer } from "./server.js";
import type { TokenStore } from "./tokens.js";
import type { AuthCodes, BrowserSessions, LocalUser, LocalUsers } from "./users.js";

export interface LogEntry {
  source: string;
  /** Seconds since the epoch, as the real stream sends it. */
  timestamp: number;
  message: string;
}

/** The app's output, kept for late subscribers and pushed live to every `/logz/stream` client. */
export class LogBuffer {
  private readonly entries: LogEntry[] = [];
  private readonly listeners = new Set<(e: LogEntry) => void>();
  constructor(private readonly max = 5000) {}
  push(source: string, message: string): void {
    const entry = { source, timestamp: Date.now() / 1000, message };
    this.entries.push(entry);
    if (this.entries.length > this.max) this.entries.shift();
    for (const l of this.listeners) l(entry);
  }
  snapshot(): LogEntry[] {
    return [...this.entries];
  }
  subscribe(listener: (e: LogEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export interface ProxyLimits {
  /** Databricks cuts a request after 120 s (a 504 before the answer starts, else the connection). */
  requestTimeoutMs: number;
  /** ...and an event stream (a GET answered with text/event-stream) after about 300 s. */
  streamTimeoutMs: number;
  /**
   * Whether the client's `Authorization` header reaches the app. Databricks does not document it; the
   * stand-in plays both so the app is tested either way (docs/apps-proxy.md).
   */
  forwardAuthorization: boolean;
}

export const DEFAULT_PROXY_LIMITS: ProxyLimits = {
  requestTimeoutMs: 120_000,
  streamTimeoutMs: 300_000,
  forwardAuthorization: true,
};

export interface AppsProxyOptions {
  tokens: Pick<TokenStore, "verifyHeader">;
  /** Where the app listens (its DATABRICKS_APP_PORT). */
  target: string;
  /** Several instances of the app (`local up --instances N`): the one to send `who`'s request to. */
  pickInstance?: (who: string) => number | undefined;
  /** The workspace's login page, where a browser without a session is sent (302). */
  loginUrl: () => string;
  logs: LogBuffer;
  users: LocalUsers;
  codes: AuthCodes;
  sessions: BrowserSessions;
  workspaceId: string;
  /** The proxy's own origins (scheme://host:port) a browser may use; the first is the canonical one. */
  origins: () => string[];
  limits: () => ProxyLimits;
  /**
   * The address the proxy's connections to the app come from. On Databricks the Apps proxy is not on the
   * app's host, and the app trusts identity headers only from elsewhere (src/runtime/proxy-trust.ts); here the
   * stand-in connects from its own loopback address, which the app is told to trust, so every other local
   * caller (127.0.0.1) stays as untrusted as a process inside a Databricks App.
   */
  sourceAddress?: string;
  /**
   * Whether a signed-in caller may open the app (its CAN USE / CAN MANAGE, app-permissions.ts). Refused:
   * 403 on every route, WebSockets and `/logz/stream` too; nothing reaches the app. Default: everyone.
   */
  mayUse?: (user: LocalUser) => boolean;
  /** The app's name, for the refusal's words. */
  appName?: string;
  /**
   * The person's token for an app with user authorization (obo-tokens.ts), forwarded as
   * X-Forwarded-Access-Token; undefined (the default) forwards none, as for an app without it.
   */
  accessTokenFor?: (user: LocalUser) => string | undefined;
}

/** The stand-in's source address where the OS routes all of 127/8 to loopback (Linux). */
export const LOCAL_PROXY_SOURCE_ADDRESS = "127.0.0.2";

/**
 * 127.0.0.2 when this machine can use it, else 127.0.0.1 (macOS has only 127.0.0.1 unless an alias is
 * added): then the app cannot tell the stand-in from other local callers, and `local` says so.
 */
export async function localProxySourceAddress(): Promise<{ address: string; distinct: boolean }> {
  const { createServer } = await import("node:net");
  return await new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve({ address: "127.0.0.1", distinct: false }));
    probe.listen(0, LOCAL_PROXY_SOURCE_ADDRESS, () =>
      probe.close(() => resolve({ address: LOCAL_PROXY_SOURCE_ADDRESS, distinct: true })),
    );
  });
}

export interface AppsProxy {
  close(): void;
  /** Open `/logz/stream` sockets (tests drop them to exercise reconnects). */
  logSockets(): Set<import("ws").WebSocket>;
}

/** The proxy's session cookie (a credential of the proxy's, never forwarded to the app). */
export const SESSION_COOKIE = "__databricks_app_session";

/** Headers only the proxy may set: a client's own copies are dropped before the app sees them. */
const PROXY_HEADERS = [
  "x-forwarded-email",
  "x-forwarded-user",
  "x-forwarded-preferred-username",
  "x-forwarded-access-token",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-port",
  "x-forwarded-for",
  "x-real-ip",
  "x-request-id",
];

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function withoutCookie(header: string | undefined, name: string): string | undefined {
  const kept = (header ?? "")
    .split(";")
    .filter((p) => p.trim() && p.split("=")[0]?.trim() !== name)
    .map((p) => p.trim());
  return kept.length > 0 ? kept.join("; ") : undefined;
}

/** Only a path on this origin may follow sign-in (no open redirect). */
function safeNext(state: string | null): string {
  return state?.startsWith("/") && !state.startsWith("//") && !state.startsWith("/\\") ? state : "/";
}

/**
 * The Apps proxy in front of an app: a request needs a valid bearer token or the proxy's session cookie;
 * without either it is sent (302) to the workspace's login page, which comes back to `/.auth/callback`
 * and sets the session cookie. Requests reach the app with the X-Forwarded-* headers Databricks sets
 * (client-sent copies dropped), within Databricks' request and stream cuts; WebSockets pass through;
 * `/logz/stream` serves the app's logs (first client message = the filter, then JSON entries).
 */
export function registerAppsProxy(appHost: PlatformServer, options: AppsProxyOptions): AppsProxy {
  const { tokens, logs, users, sessions } = options;
  // timeout 4 s: a free pooled socket is dropped before the app's server closes it (Node's default
  // keep-alive is 5 s); reusing one the app is closing is an ECONNRESET, i.e. a 502 after a few idle seconds.
  const agent = new Agent({
    keepAlive: true,
    noDelay: true,
    timeout: 4000,
    ...(options.sourceAddress ? { localAddress: options.sourceAddress } : {}),
  });
  const proxy = createProxyServer({
    target: options.target,
    xfwd: false,
    ws: true,
    agent,
    ...(options.sourceAddress ? { localAddress: options.sourceAddress } : {}),
  });
  const upstreamRequests = new WeakMap<IncomingMessage, ClientRequest>();
  const onStream = new WeakMap<IncomingMessage, () => void>();
  proxy.on("proxyReq", (proxyReq, req) => upstreamRequests.set(req, proxyReq));
  proxy.on("proxyRes", (proxyRes, req) => {
    if (req.method === "GET" && /^text\/event-stream/i.test(proxyRes.headers["content-type"] ?? ""))
      onStream.get(req)?.();
  });
  proxy.on("error", (err, _req, res) => {
    const r = res as unknown as {
      headersSent?: boolean;
      writableEnded?: boolean;
      writeHead?: (s: number, h: object) => void;
      end?: (b: string) => void;
      destroy?: () => void;
    };
    if (r.writableEnded) return;
    if (r.writeHead && !r.headersSent) {
      r.writeHead(502, { "content-type": "text/plain" });
      r.end?.(`Bad gateway: the app is not answering (${err.message})`);
    } else r.destroy?.();
  });

  const origin = (req: IncomingMessage): string => {
    const all = options.origins();
    const asked = all.find((o) => new URL(o).host === req.headers.host);
    return asked ?? all[0]!;
  };
  const callbackUri = (o: string) => `${o}/.auth/callback`;

  /** Who is calling: a valid bearer token, else a valid session cookie. */
  const caller = (req: IncomingMessage): LocalUser | undefined => {
    const token = tokens.verifyHeader(req.headers.authorization);
    // A token of a service principal (M2M) names no local user: the principal is who calls.
    if (token)
      return users.get(token.subject) ?? { id: token.subject, email: token.subject, name: token.subject };
    return users.get(sessions.verify(cookieValue(req.headers.cookie, SESSION_COOKIE)));
  };

  const forwardedHeaders = (req: IncomingMessage, user: LocalUser, o: string) => {
    for (const h of PROXY_HEADERS) delete req.headers[h];
    if (!options.limits().forwardAuthorization) delete req.headers.authorization;
    const cookie = withoutCookie(req.headers.cookie, SESSION_COOKIE);
    if (cookie) req.headers.cookie = cookie;
    else delete req.headers.cookie;
    const ip = (req.socket.remoteAddress ?? "127.0.0.1").replace(/^::ffff:/, "");
    req.headers["x-forwarded-host"] = new URL(o).host;
    req.headers["x-forwarded-proto"] = new URL(o).protocol.replace(":", "");
    req.headers["x-forwarded-for"] = ip;
    req.headers["x-real-ip"] = ip;
    req.headers["x-request-id"] = randomUUID();
    req.headers["x-forwarded-email"] = user.email;
    req.headers["x-forwarded-user"] = `${user.id}@${options.workspaceId}`;
    req.headers["x-forwarded-preferred-username"] = user.name;
    const onBehalfOf = options.accessTokenFor?.(user);
    if (onBehalfOf) req.headers["x-forwarded-access-token"] = onBehalfOf;
  };

  appHost.route("GET", "/.auth/callback", ({ req, res, query }) => {
    const o = origin(req);
    const email = options.codes.take(query.get("code"), callbackUri(o));
    if (!email) {
      res.writeHead(302, {
        location: `${options.loginUrl()}?${new URLSearchParams({ redirect_uri: callbackUri(o), state: safeNext(query.get("state")) })}`,
      });
      res.end();
      return;
    }
    res.writeHead(302, {
      location: safeNext(query.get("state")),
      "set-cookie": `${SESSION_COOKIE}=${sessions.create(email)}; Path=/; Max-Age=${Math.floor(sessions.ttlMs / 1000)}; HttpOnly; SameSite=Lax${o.startsWith("https:") ? "; Secure" : ""}`,
      "cache-control": "no-store",
    });
    res.end();
  });

  /** undefined: the one target; null: several, none in rotation. */
  const instanceFor = (user: LocalUser): string | null | undefined => {
    if (!options.pickInstance) return undefined;
    const port = options.pickInstance(user.id);
    return port === undefined ? null : `http://127.0.0.1:${port}`;
  };

  const refused = (user: LocalUser) => options.mayUse !== undefined && !options.mayUse(user);
  const refusal = (user: LocalUser) =>
    `${user.email} does not have permission to use app ${options.appName ?? ""}: ask one of its managers for CAN USE (APP_CAN_USE)\n`;

  appHost.fallback((req, res) => {
    const o = origin(req);
    const user = caller(req);
    if (!user) {
      const login = new URLSearchParams({ redirect_uri: callbackUri(o), state: req.url ?? "/" });
      res.writeHead(302, { location: `${options.loginUrl()}?${login}` });
      res.end();
      return true;
    }
    if (refused(user)) {
      res.writeHead(403, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.end(refusal(user));
      return true;
    }
    forwardedHeaders(req, user, o);
    const limits = options.limits();
    let timer: NodeJS.Timeout;
    const cut = () => {
      if (!res.headersSent) {
        res.writeHead(504, { "content-type": "text/plain" });
        res.end("upstream request timeout");
      } else res.destroy();
      upstreamRequests.get(req)?.destroy();
    };
    timer = setTimeout(cut, limits.requestTimeoutMs);
    onStream.set(req, () => {
      clearTimeout(timer);
      timer = setTimeout(cut, limits.streamTimeoutMs);
    });
    res.once("close", () => clearTimeout(timer));
    const target = instanceFor(user);
    if (target === null) {
      res.writeHead(503, { "content-type": "text/plain", "retry-after": "1" });
      res.end("no instance of the app is in rotation");
      return true;
    }
    proxy.web(req, res, target ? { target } : {});
    return true;
  });
  const wss = new WebSocketServer({ noServer: true });
  const sockets = new Set<import("ws").WebSocket>();
  appHost.upgrade("/logz/stream", (req, socket: Duplex, head) => {
    const user = caller(req);
    if (!user) {
      socket.end("HTTP/1.1 401 Unauthorized\r\n\r\n");
      return;
    }
    if (refused(user)) {
      socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on("close", () => sockets.delete(ws));
      ws.once("message", (data) => {
        const filter = String(data);
        const send = (e: LogEntry) => {
          if (!filter || e.message.includes(filter)) ws.send(JSON.stringify(e));
        };
        for (const e of logs.snapshot()) send(e);
        const unsubscribe = logs.subscribe(send);
        ws.on("close", unsubscribe);
      });
    });
  });
  appHost.upgrade("/", (req, socket: Duplex, head) => {
    const user = caller(req);
    if (!user) {
      socket.end("HTTP/1.1 401 Unauthorized\r\n\r\n");
      return;
    }
    if (refused(user)) {
      socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
      return;
    }
    forwardedHeaders(req, user, origin(req));
    const target = instanceFor(user);
    if (target === null) {
      socket.end("HTTP/1.1 503 Service Unavailable\r\n\r\n");
      return;
    }
    proxy.ws(req, socket, head, target ? { target } : {});
  });
  return {
    close() {
      for (const s of sockets) s.terminate();
      wss.close();
      proxy.close();
      agent.destroy();
    },
    logSockets: () => sockets,
  };
}
