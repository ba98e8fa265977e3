import { randomUUID } from "node:crypto";
import {
  Agent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { retry } from "../retry.js";
import { IDENTITY_SECRET_HEADER, stampIdentitySecret } from "./identity-signin.js";
import { IDENTITY_HEADERS } from "./proxy-trust.js";
import type { SessionTable, TrackedSession } from "./session-guard.js";
import { withoutSessionListings } from "./session-guard.js";
import type { InitializeParams, SessionStoreLike } from "./session-store.js";

/**
 * MCP sessions (streamable HTTP) that outlive the MetaMCP process they were opened in (docs/scaling.md).
 * MetaMCP keeps sessions in its backend's memory: a backend restart, an app restart or a request reaching
 * another instance of the app would answer 404 "Session not found", and most MCP clients do not
 * re-initialize by themselves. So the router records, when a session opens, what re-opening it needs (its
 * owner, endpoint and the client's initialize parameters: session-store.ts); when a request names a session
 * this instance's MetaMCP does not have, the router — for the session's recorded owner only, on its
 * endpoint, exactly session-guard's rule — sends MetaMCP an initialize of its own with the request's
 * credentials, maps the client's session id to the new one, and forwards the request there. Answers carry
 * the client's id back: the client never sees the change.
 *
 * How the router knows MetaMCP lacks a session: this instance's router has never seen the id (the app
 * restarted, or the session was opened on another instance), or the backend process it was opened in is
 * gone (`generation`: the supervisor counts the backend's starts and exits). A 404 from MetaMCP for a
 * session the router believed live (MetaMCP ended it by itself) drops the router's copy: the next request
 * re-opens it. Requests are never buffered or replayed: a request in flight when a process dies fails once,
 * with a clear error, and the next one is served.
 */

/** What a session's re-opening and ending at the backend need of the caller's request (never logged). */
export const SESSION_CREDENTIAL_HEADERS = [
  "authorization",
  "x-api-key",
  "cookie",
  "host",
  ...IDENTITY_HEADERS,
] as const;

export function sessionCredentialHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of SESSION_CREDENTIAL_HEADERS) {
    const v = headers[h];
    if (typeof v === "string") out[h] = v;
  }
  return out;
}

/** An initialize request's body is small; past this it is not read for the store (the session stays local). */
const MAX_INITIALIZE_BODY = 64 * 1024;
/** A call's body is kept (by reference, never copied) up to this size, to name its ids in an error. */
const MAX_TAPPED_BODY = 256 * 1024;
const MAX_ANSWER = 1024 * 1024;

export interface SessionContinuityOptions {
  store: SessionStoreLike;
  backendPort: number;
  /** Changes whenever MetaMCP's backend process starts or exits (SupervisedChild.generation). */
  generation?: () => number;
  /** The per-start secret the backend trusts identity headers with (identity-signin.ts). */
  identitySecret?: string;
  /** How long a re-open waits for a backend that is restarting (default 30 s; the proxy cuts at 120 s). */
  backendWaitMs?: number;
  /** A session's row is marked used at most this often (default 60 s): the idle sweep's clock. */
  touchEveryMs?: number;
  warn?: (message: string) => void;
  now?: () => number;
}

export type Reopening =
  | { kind: "session"; session: TrackedSession }
  | { kind: "unknown" }
  /** Answered here instead (MetaMCP refused the re-open, the store is unreachable): status and body. */
  | { kind: "answer"; status: number; contentType: string; body: string };

interface Flight {
  principal: string;
  scope: string;
  promise: Promise<Reopening>;
}

export class SessionContinuity {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 16, timeout: 4000 });
  private readonly openings = new WeakMap<IncomingMessage, Promise<InitializeParams | undefined>>();
  private readonly touched = new WeakMap<TrackedSession, number>();
  private readonly flights = new Map<string, Flight[]>();
  private readonly now: () => number;
  private warnedAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: SessionContinuityOptions) {
    this.now = options.now ?? Date.now;
  }

  generation(): number {
    return this.options.generation?.() ?? 0;
  }

  /** True when MetaMCP may lack the session: the router has no copy, or its backend process is gone. */
  needsReopen(s: TrackedSession | undefined): boolean {
    return !s || (s.transport === "streamable" && (s.generation ?? 0) !== this.generation());
  }

  /** Called for a request that opens a streamable session: reads its initialize params as they pass. */
  watchOpening(req: IncomingMessage): void {
    this.openings.set(
      req,
      new Promise((resolve) => {
        const chunks: Buffer[] = [];
        let size = 0;
        req.on("data", (c: Buffer) => {
          size += c.length;
          if (size <= MAX_INITIALIZE_BODY) chunks.push(c);
        });
        req.once("end", () =>
          resolve(size <= MAX_INITIALIZE_BODY ? initializeParamsOf(Buffer.concat(chunks)) : undefined),
        );
        req.once("close", () => resolve(undefined)); // after 'end' a no-op
      }),
    );
  }

  /**
   * MetaMCP opened `sessionId` for the request: recorded before the client learns the id (the caller holds
   * the answer until this settles, at most `waitMs`), so its next request may go to any instance.
   */
  async opened(
    req: IncomingMessage,
    sessionId: string,
    principal: string,
    scope: string,
    waitMs = 3000,
  ): Promise<void> {
    const init = await this.openings.get(req);
    if (!init) {
      this.warnSometimes(
        `an MCP session on ${scope} could not be recorded (its initialize request was not readable): it lasts only as long as this MetaMCP process`,
      );
      return;
    }
    const put = this.options.store
      .put(sessionId, { principal, scope, init })
      .catch((err: Error) =>
        this.warnSometimes(
          `could not record an MCP session in the database (${err.message}): it lasts only as long as this MetaMCP process`,
        ),
      );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([put, new Promise((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  /**
   * A request of the session passes: its row is marked used now and then (fire and forget). A row found
   * gone means its owner ended the session on another instance: `gone` ends this instance's copy too.
   */
  used(s: TrackedSession, gone: () => void): void {
    const at = this.now();
    const last = this.touched.get(s);
    if (last !== undefined && at - last < (this.options.touchEveryMs ?? 60_000)) return;
    this.touched.set(s, at);
    if (last === undefined && s.backendId === undefined) return; // just recorded by `opened`
    this.options.store.touch(s.id).then(
      (exists) => {
        if (!exists) gone();
      },
      (err: Error) => this.warnSometimes(`could not mark an MCP session used: ${err.message}`),
    );
  }

  /** The session ended here: its row goes too (for idleness, only if no other instance used it meanwhile). */
  ended(sessionId: string, why: "deleted" | "idle" | "evicted"): void {
    this.options.store
      .remove(sessionId, why === "idle")
      .catch((err: Error) =>
        this.warnSometimes(`could not delete an ended MCP session's row: ${err.message}`),
      );
  }

  /**
   * Re-opens `sessionId` at MetaMCP for `principal` on `scope`, if the store says it is theirs there; one
   * re-open per session at a time (concurrent requests of it wait for the same one).
   */
  reopen(
    req: IncomingMessage,
    sessionId: string,
    principal: string,
    scope: string,
    sessions: SessionTable,
  ): Promise<Reopening> {
    const flights = this.flights.get(sessionId) ?? [];
    const same = flights.find((f) => f.principal === principal && f.scope === scope);
    if (same) return same.promise;
    const flight: Flight = {
      principal,
      scope,
      promise: this.reopenOnce(req, sessionId, principal, scope, sessions).finally(() => {
        const left = (this.flights.get(sessionId) ?? []).filter((f) => f !== flight);
        if (left.length) this.flights.set(sessionId, left);
        else this.flights.delete(sessionId);
      }),
    };
    this.flights.set(sessionId, [...flights, flight]);
    return flight.promise;
  }

  private async reopenOnce(
    req: IncomingMessage,
    sessionId: string,
    principal: string,
    scope: string,
    sessions: SessionTable,
  ): Promise<Reopening> {
    let row: Awaited<ReturnType<SessionStoreLike["get"]>>;
    try {
      row = await this.options.store.get(sessionId);
    } catch (err) {
      return {
        kind: "answer",
        status: 503,
        contentType: "application/json; charset=utf-8",
        body: JSON.stringify({
          error: "Session store unavailable",
          message: `this MCP session cannot be re-opened right now (the app's database: ${(err as Error).message}); try again`,
        }),
      };
    }
    // Exactly session-guard's rule: another principal's session, or one of another endpoint, is unknown.
    if (!row || row.principal !== principal || row.scope !== scope) return { kind: "unknown" };
    const path = req.url ?? "/";
    const headers = sessionCredentialHeaders(req.headers);
    stampIdentitySecret(headers, this.options.identitySecret);
    const opened = await this.initializeAtBackend(path, headers, row.init);
    if (opened.kind === "answer") return opened;
    // Whatever copy the router had is stale: the new one replaces it (same client id, new backend id).
    sessions.forget(sessionId);
    const close = { path, headers: { ...headers } };
    delete close.headers[IDENTITY_SECRET_HEADER];
    const session = sessions.add({
      id: sessionId,
      scope,
      principal,
      transport: "streamable",
      close,
      backendId: opened.backendId,
      generation: opened.generation,
    });
    this.touched.set(session, Number.NEGATIVE_INFINITY);
    return { kind: "session", session };
  }

  /** initialize + notifications/initialized at MetaMCP, waiting for a backend that is restarting. */
  private async initializeAtBackend(
    path: string,
    headers: Record<string, string>,
    init: InitializeParams,
  ): Promise<
    { kind: "opened"; backendId: string; generation: number } | Extract<Reopening, { kind: "answer" }>
  > {
    let generation = this.generation();
    let answer: HttpAnswer;
    try {
      answer = await retry(
        async () => {
          generation = this.generation();
          return await this.post(path, headers, {
            jsonrpc: "2.0",
            id: `databricks-reopen-${randomUUID()}`,
            method: "initialize",
            params: init,
          });
        },
        {
          firstWaitMs: 100,
          maxWaitMs: 1000,
          deadlineMs: this.options.backendWaitMs ?? 30_000,
          retryable: isConnectionError,
        },
      );
    } catch (err) {
      return unavailable(`MetaMCP is not answering (${(err as Error).message})`);
    }
    const backendId = answer.headers["mcp-session-id"];
    if (answer.status !== 200 || typeof backendId !== "string" || backendId === "") {
      // MetaMCP refused (the key was revoked, the endpoint is gone): its answer, minus any session listing.
      const ct = String(answer.headers["content-type"] ?? "text/plain; charset=utf-8");
      return {
        kind: "answer",
        status: answer.status === 200 ? 502 : answer.status,
        contentType: ct,
        body: withoutSessionListings(answer.body) ?? answer.body,
      };
    }
    const protocolVersion = negotiatedVersion(answer.body) ?? init.protocolVersion;
    // Sent, not awaited: the protocol's next step, on which MetaMCP's handling of the request does not wait
    // (the SDK's server does not gate requests on it), so re-opening costs one initialize round trip.
    this.post(
      path,
      { ...headers, "mcp-session-id": backendId, "mcp-protocol-version": protocolVersion },
      { jsonrpc: "2.0", method: "notifications/initialized" },
    ).then(
      (ack) => {
        if (ack.status >= 300)
          this.warnSometimes(
            `MetaMCP answered ${ack.status} to a re-opened session's notifications/initialized`,
          );
      },
      () => {}, // MetaMCP gone again: the request forwarded meanwhile fails on its own, clearly
    );
    return { kind: "opened", backendId, generation };
  }

  private post(path: string, headers: Record<string, string>, body: unknown): Promise<HttpAnswer> {
    const data = Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const r = httpRequest(
        {
          host: "127.0.0.1",
          port: this.options.backendPort,
          method: "POST",
          path,
          agent: this.agent,
          headers: {
            ...headers,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "content-length": String(data.length),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size <= MAX_ANSWER) chunks.push(c);
          });
          res.once("end", () =>
            resolve({
              status: res.statusCode ?? 502,
              headers: res.headers,
              body: Buffer.concat(chunks).toString("utf8"),
            }),
          );
          res.once("error", reject);
        },
      );
      r.once("error", reject);
      r.end(data);
    });
  }

  /**
   * MetaMCP dying in the middle of an event-stream answer (its SSE headers go out before the tool runs): the
   * calls the request carried are answered with a clear JSON-RPC error, at once, rather than left to the
   * client's request timeout (a POST's stream is not one the client re-opens). The request's body chunks are
   * kept by reference (read only then); the returned function watches the answer as it is relayed.
   */
  watchCall(req: IncomingMessage): (proxyRes: IncomingMessage, res: ServerResponse) => void {
    const chunks: Buffer[] = [];
    let size = 0;
    if (req.method === "POST") {
      const onData = (c: Buffer) => {
        size += c.length;
        if (size <= MAX_TAPPED_BODY) chunks.push(c);
        else req.off("data", onData);
      };
      req.on("data", onData);
    }
    const ids = () => (size > 0 && size <= MAX_TAPPED_BODY ? requestIdsOf(Buffer.concat(chunks)) : []);
    return (proxyRes, res) => {
      if (!String(proxyRes.headers["content-type"] ?? "").includes("text/event-stream")) return;
      proxyRes.once("close", () => {
        if (proxyRes.complete || res.writableEnded || res.destroyed) return;
        proxyRes.unpipe(res);
        res.end(inFlightErrorEvents(ids()));
      });
    };
  }

  close(): void {
    this.agent.destroy();
  }

  private warnSometimes(message: string): void {
    const at = this.now();
    if (at - this.warnedAt < 60_000) return;
    this.warnedAt = at;
    this.options.warn?.(message);
  }
}

interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function unavailable(why: string): Extract<Reopening, { kind: "answer" }> {
  return {
    kind: "answer",
    status: 503,
    contentType: "application/json; charset=utf-8",
    body: JSON.stringify({
      error: "Session not re-opened",
      message: `this MCP session could not be re-opened at MetaMCP: ${why}; try again`,
    }),
  };
}

const CONNECTION_ERRORS = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT"]);
function isConnectionError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return (
    (code !== undefined && CONNECTION_ERRORS.has(code)) ||
    /socket hang up/.test(String((err as Error)?.message))
  );
}

/** The JSON-RPC messages of a body (one, or a batch). */
function messagesOf(body: Buffer | string): Record<string, unknown>[] {
  try {
    const v: unknown = JSON.parse(body.toString());
    const all = Array.isArray(v) ? v : [v];
    return all.filter((m): m is Record<string, unknown> => !!m && typeof m === "object");
  } catch {
    return [];
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  !!v && typeof v === "object" && !Array.isArray(v);

/** The initialize params of an opening request's body, or undefined when it holds no well-formed one. */
export function initializeParamsOf(body: Buffer | string): InitializeParams | undefined {
  const m = messagesOf(body).find((x) => x.method === "initialize");
  const p = m?.params;
  if (!isObject(p) || typeof p.protocolVersion !== "string") return undefined;
  return {
    protocolVersion: p.protocolVersion,
    capabilities: isObject(p.capabilities) ? p.capabilities : {},
    clientInfo: isObject(p.clientInfo) ? p.clientInfo : {},
  };
}

/** The ids of a call's JSON-RPC requests (notifications and responses have none to answer). */
export function requestIdsOf(body: Buffer | string): Array<string | number> {
  return messagesOf(body)
    .filter((m) => typeof m.method === "string" && (typeof m.id === "string" || typeof m.id === "number"))
    .map((m) => m.id as string | number);
}

/** The protocol version in MetaMCP's initialize answer (JSON, or the SSE `data:` of one message). */
function negotiatedVersion(body: string): string | undefined {
  const texts = body.trimStart().startsWith("{")
    ? [body]
    : [...body.matchAll(/^data:\s?(.*)$/gm)].map((m) => m[1]!);
  for (const t of texts) {
    const r = messagesOf(t)[0]?.result;
    if (isObject(r) && typeof r.protocolVersion === "string") return r.protocolVersion;
  }
  return undefined;
}

/** What a caller sees of a call MetaMCP was answering when its process died (docs/scaling.md). */
export const IN_FLIGHT_MESSAGE =
  "MetaMCP stopped while answering this request (a restart): it did not complete. Send it again: the MCP session continues";

/**
 * SSE events answering each of `ids` with a JSON-RPC error saying so; first a blank line, which ends an event
 * the dying process left half-written (an empty event is ignored by SSE parsers).
 */
export function inFlightErrorEvents(ids: ReadonlyArray<string | number>): string {
  return (
    "\n\n" +
    ids
      .map(
        (id) =>
          `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32603, message: IN_FLIGHT_MESSAGE } })}\n\n`,
      )
      .join("")
  );
}
