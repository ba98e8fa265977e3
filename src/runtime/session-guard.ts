import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

/**
 * MCP sessions belong to whoever opened them (docs/threats.md). Upstream MetaMCP keeps every session of a
 * transport in one process-wide map and looks a request's session up by id alone, regardless of endpoint
 * or caller, and it hands ids out (`GET /metamcp/health/sessions`, `available_sessions` in a 404,
 * `remainingSessions` after a DELETE). Our router sees every request, on every release, so it keeps its own
 * table: session id → who opened it, on which endpoint. A request naming a session that is not the caller's
 * (or not of that endpoint) is answered exactly as an unknown one, and is never forwarded.
 */

/** Where a session lives: `metamcp/<endpoint>`, `mcp-proxy/metamcp/<namespace uuid>` or `mcp-proxy/server`. */
export interface SessionRoute {
  scope: string;
  /** `mcp`: streamable HTTP (id in `Mcp-Session-Id`); `sse`/`stdio`: opens an SSE session; `message`: posts to one. */
  kind: "mcp" | "sse" | "stdio" | "message";
}

// Express matches routes case-insensitively and ignores one trailing slash: so do we, or `/metamcp/e/MCP`
// would name a session past the guard.
const SESSION_ROUTE =
  /^\/(metamcp\/[^/]+|mcp-proxy\/metamcp\/[^/]+|mcp-proxy\/server)\/(mcp|sse|stdio|message)\/?$/i;

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function sessionRouteOf(pathname: string): SessionRoute | undefined {
  const m = SESSION_ROUTE.exec(pathname);
  if (!m) return undefined;
  const [family, name] = splitScope(m[1]!);
  const kind = m[2]!.toLowerCase() as SessionRoute["kind"];
  if (family === "metamcp" && (name === "_databricks" || name?.toLowerCase() === "health")) return undefined;
  return { scope: name === undefined ? family : `${family}/${decodeSegment(name)}`, kind };
}

function splitScope(raw: string): [string, string] | [string, undefined] {
  const parts = raw.split("/");
  if (parts[0]!.toLowerCase() === "metamcp") return ["metamcp", parts[1]!];
  if (parts[1]!.toLowerCase() === "metamcp") return ["mcp-proxy/metamcp", parts[2]!];
  return ["mcp-proxy/server", undefined];
}

/** Upstream routes that list sessions (and pool status): never reachable through the app port. */
export function isSessionListing(pathname: string): boolean {
  return /^\/metamcp\/health\/sessions\/?$/i.test(pathname.replace(/\/{2,}/g, "/"));
}

/** The session a request names: `Mcp-Session-Id`, or `?sessionId=` on an SSE message route. */
export function namedSessionId(
  headers: IncomingHttpHeaders,
  route: SessionRoute | undefined,
  query: URLSearchParams | undefined,
): string | undefined {
  const h = headers["mcp-session-id"];
  if (typeof h === "string" && h !== "") return h;
  if (Array.isArray(h) && h.length) return h.join(",");
  if (route?.kind === "message") return query?.get("sessionId") ?? undefined;
  return undefined;
}

const hash = (s: string) => createHash("sha256").update(s).digest("base64url").slice(0, 22);

/**
 * Who a request is. Behind the Apps proxy every request carries the person (or service principal) the
 * proxy authenticated; a MetaMCP API key narrows it further (several agents of one service principal, each
 * with its own key, are several principals). MetaMCP's own OAuth tokens (`mcp_token_…`) are renewed during a
 * session, so they count only where there is no proxy identity; the UI's session cookie likewise.
 * Only hashes are kept.
 */
export function principalOf(headers: IncomingHttpHeaders, query: URLSearchParams | undefined): string {
  const parts: string[] = [];
  const email = headers["x-forwarded-email"];
  const identity = typeof email === "string" && email.trim() !== "" ? email.trim().toLowerCase() : "";
  if (identity) parts.push(`u:${identity}`);
  const xKey = headers["x-api-key"];
  const bearer = /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? "")?.[1];
  const queryKey = query?.get("api_key") ?? query?.get("apikey") ?? undefined;
  const key = typeof xKey === "string" && xKey !== "" ? xKey : (bearer ?? queryKey);
  if (key && !(identity && key.startsWith("mcp_token_"))) parts.push(`k:${hash(key)}`);
  if (parts.length === 0 && typeof headers.cookie === "string" && headers.cookie !== "")
    parts.push(`c:${hash(headers.cookie)}`);
  return parts.length ? parts.join("|") : "anonymous";
}

export interface TrackedSession {
  id: string;
  scope: string;
  principal: string;
  transport: "streamable" | "sse";
  lastSeen: number;
  inflight: number;
  /** The id MetaMCP knows it by, when the router re-opened it there (session-continuity.ts); else `id`. */
  backendId?: string;
  /** The backend process it lives in (SessionContinuity.generation): another means MetaMCP lost it. */
  generation?: number;
  /** How to end it at the backend as its owner (streamable: a DELETE with the opener's credentials). */
  close?: { path: string; headers: Record<string, string> };
  /**
   * Open answers streaming to the client (the SSE stream, a streamable GET): cut when the session ends.
   * Made on first use: most sessions never hold one, and an empty Set per session is most of the table's memory.
   */
  streams?: Set<{ destroy(): void }>;
}

export interface SessionTableOptions {
  /** A session with no request for this long is ended (METAMCP_SESSION_IDLE_MINUTES, default 30 min). */
  idleMs: number;
  /** At most this many sessions are tracked; past it the least recently used idle one is ended. */
  maxSessions: number;
  /**
   * At most this many of one principal (default a tenth of maxSessions): past it that principal's own least
   * recently used session is ended, so one caller opening sessions in a loop cannot end everyone else's.
   */
  maxPerPrincipal?: number;
  /** Ends a session at the backend (it is already out of the table). */
  end: (session: TrackedSession, why: "idle" | "evicted") => void;
  now?: () => number;
}

export const DEFAULT_SESSION_IDLE_MS = 30 * 60_000;
export const DEFAULT_MAX_SESSIONS = 10_000;

/** The router's session table: insertion order is least-recently-used first (touch re-inserts). */
export class SessionTable {
  private readonly sessions = new Map<string, TrackedSession>();
  private readonly perPrincipal = new Map<string, number>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SessionTableOptions) {
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** The session `id` if `principal` opened it on `scope` (scope unchecked when the path has none). */
  owned(id: string, principal: string, scope: string | undefined): TrackedSession | undefined {
    const s = this.sessions.get(id);
    if (!s || s.principal !== principal || (scope !== undefined && s.scope !== scope)) return undefined;
    return s;
  }

  add(session: Omit<TrackedSession, "lastSeen" | "inflight" | "streams">): TrackedSession {
    const s: TrackedSession = { ...session, lastSeen: this.now(), inflight: 0 };
    this.forget(s.id);
    this.sessions.set(s.id, s);
    this.perPrincipal.set(s.principal, (this.perPrincipal.get(s.principal) ?? 0) + 1);
    const perPrincipal =
      this.options.maxPerPrincipal ?? Math.max(1, Math.floor(this.options.maxSessions / 10));
    while ((this.perPrincipal.get(s.principal) ?? 0) > perPrincipal) {
      const victim = this.leastRecentlyUsed(s, s.principal);
      if (!victim) break;
      this.forget(victim.id);
      this.options.end(victim, "evicted");
    }
    while (this.sessions.size > this.options.maxSessions) {
      const victim = this.leastRecentlyUsed(s);
      if (!victim) break;
      this.forget(victim.id);
      this.options.end(victim, "evicted");
    }
    return s;
  }

  /** Keeps `stream` (an answer streaming to the client) until it closes, to cut it if the session ends first. */
  holdStream(
    s: TrackedSession,
    stream: { destroy(): void; once(event: "close", f: () => void): unknown },
  ): void {
    s.streams ??= new Set();
    s.streams.add(stream);
    stream.once("close", () => s.streams?.delete(stream));
  }

  /** A request of the session starts: it is in use until `done`. */
  begin(s: TrackedSession): () => void {
    s.inflight++;
    this.touch(s);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      s.inflight--;
      this.touch(s);
    };
  }

  forget(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    const n = (this.perPrincipal.get(s.principal) ?? 1) - 1;
    if (n > 0) this.perPrincipal.set(s.principal, n);
    else this.perPrincipal.delete(s.principal);
  }

  /** Ends every session idle past the limit; returns how many. */
  sweep(): number {
    const cutoff = this.now() - this.options.idleMs;
    let ended = 0;
    for (const s of this.sessions.values()) {
      if (s.lastSeen > cutoff) break; // LRU order: everything after is newer
      if (s.inflight > 0) continue;
      this.forget(s.id);
      this.options.end(s, "idle");
      ended++;
    }
    return ended;
  }

  start(): void {
    if (this.timer) return;
    const every = Math.max(250, Math.min(60_000, Math.floor(this.options.idleMs / 4)));
    this.timer = setInterval(() => this.sweep(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private touch(s: TrackedSession): void {
    s.lastSeen = this.now();
    if (this.sessions.get(s.id) !== s) return; // ended meanwhile
    this.sessions.delete(s.id);
    this.sessions.set(s.id, s);
  }

  /** The oldest idle session, else the oldest (a hard bound: a client holding streams open counts too). */
  private leastRecentlyUsed(except: TrackedSession, principal?: string): TrackedSession | undefined {
    let first: TrackedSession | undefined;
    for (const s of this.sessions.values()) {
      if (s === except || (principal !== undefined && s.principal !== principal)) continue;
      first ??= s;
      if (s.inflight === 0) return s;
    }
    return first;
  }
}

/** The session id in an SSE stream's first `endpoint` event (`data: /…/message?sessionId=<id>`). */
export function sessionIdFromEndpointEvent(text: string): string | undefined {
  const m = /(?:^|\n)event:\s*endpoint\r?\ndata:\s*(\S+)/.exec(text);
  if (!m) return undefined;
  try {
    return new URL(m[1]!, "http://x").searchParams.get("sessionId") ?? undefined;
  } catch {
    return undefined;
  }
}

/** Keys of upstream's answers that list other sessions' ids. */
const LISTING_KEYS = ["available_sessions", "remainingSessions", "sessionIds"];

/** A JSON answer without any session listing (whatever the nesting); undefined when `body` is not JSON. */
export function withoutSessionListings(body: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  const strip = (v: unknown): void => {
    if (Array.isArray(v)) for (const x of v) strip(x);
    else if (v && typeof v === "object") {
      for (const k of Object.keys(v)) {
        if (LISTING_KEYS.includes(k)) delete (v as Record<string, unknown>)[k];
        else strip((v as Record<string, unknown>)[k]);
      }
    }
  };
  strip(value);
  return JSON.stringify(value);
}
