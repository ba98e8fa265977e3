import type { IncomingMessage, ServerResponse } from "node:http";
import { StringDecoder } from "node:string_decoder";
import { createParser } from "eventsource-parser";
import {
  type AnswerMessage,
  answersInBody,
  answersInText,
  BodyTap,
  type RequestMessage,
  requestsIn,
} from "./audit-messages.js";
import {
  type AuditArgumentMode,
  type AuditOutcome,
  type AuditRow,
  argumentsColumn,
  auditPrincipal,
  endpointAndNamespace,
  sessionHash,
  shortError,
  splitToolName,
} from "./audit-rows.js";
import { sessionIdFromEndpointEvent } from "./session-guard.js";

/**
 * The router's view of MCP traffic for the audit (issue 24, docs/audit.md): it watches the bytes the router
 * passes on (extra 'data' listeners beside the proxy's pipe, so nothing is held back or copied for the client)
 * and makes one row per audited JSON-RPC request once its answer has passed, or once it cannot come (`cut`).
 * Streamable HTTP answers come on the POST's own answer (JSON or an SSE stream); the SSE transport's come on the
 * session's GET stream, matched by JSON-RPC id.
 */
export interface AuditSink {
  record(row: AuditRow): void;
}

export interface AuditObserverOptions {
  sink: AuditSink;
  arguments: AuditArgumentMode;
  /** The most sessions whose client name (from initialize) is remembered. */
  maxSessions?: number;
}

/** An SSE stream's event larger than this ends the parser's buffering (it restarts at the next event). */
const MAX_STREAM_EVENT_CHARS = 1024 * 1024;
/** Requests of one SSE session waiting for their answer: past it the oldest is recorded as `cut`. */
const MAX_PENDING_PER_SESSION = 1000;

interface Context {
  principal: string;
  endpoint: string | null;
  namespace: string | null;
  sessionId?: string;
}

interface Call {
  message: RequestMessage;
  ctx: Context;
  calledAt: Date;
  t0: number;
  requestBytes: number;
}

interface Exchange {
  ctx: Context;
  calledAt: Date;
  t0: number;
  tap: BodyTap;
  transport: "streamable" | "message";
  /** Set once the request body is read (and calls handed on). */
  parsed: boolean;
  /** Calls of a streamable POST waiting for their answer on this request's answer. */
  pending: Map<string, Call>;
  /** The HTTP status that decides the calls when it is a refusal (401/403/404) or another failure. */
  status?: number;
  /** Session id an initialize's answer carried (streamable). */
  answerSession?: string;
  done: boolean;
}

interface SseSession {
  pending: Map<string, Call>;
}

const REFUSED = new Set([401, 403, 404]);

export class AuditObserver {
  private readonly exchanges = new WeakMap<IncomingMessage, Exchange>();
  private readonly sseSessions = new Map<string, SseSession>();
  /** session id → `name/version` from its initialize; insertion order is age. */
  private readonly clients = new Map<string, string>();
  /** session id → its hash: one SHA-256 per session, not per row. */
  private readonly hashes = new Map<string, string>();
  private readonly maxSessions: number;

  constructor(private readonly options: AuditObserverOptions) {
    this.maxSessions = options.maxSessions ?? 10_000;
  }

  /**
   * A POST that may carry audited requests: `/…/mcp` (streamable HTTP) or `/…/message?sessionId=` (SSE).
   * Called before the router forwards (or refuses) it, after untrusted identity headers are gone.
   */
  request(
    req: IncomingMessage,
    res: ServerResponse,
    scope: string,
    transport: "streamable" | "message",
    sessionId: string | undefined,
  ): void {
    const ex: Exchange = {
      ctx: { principal: auditPrincipal(req.headers), ...endpointAndNamespace(scope), sessionId },
      calledAt: new Date(),
      t0: performance.now(),
      tap: new BodyTap(),
      transport,
      parsed: false,
      pending: new Map(),
      done: false,
    };
    this.exchanges.set(req, ex);
    req.on("data", (c: Buffer) => ex.tap.add(c));
    req.once("end", () => this.parsed(ex));
    res.once("close", () => {
      const why = res.writableFinished ? undefined : "the client went away before the answer";
      const go = () => {
        this.parsed(ex);
        this.finish(ex, why);
      };
      // Answered (or refused) before the body was all in: decide once it is, to read what was asked.
      if (req.readableEnded || req.destroyed) go();
      else {
        req.once("end", go);
        req.once("close", go);
      }
    });
  }

  /** The router answered the request itself with `status` (an unknown or someone else's session). */
  refused(req: IncomingMessage, status: number): void {
    const ex = this.exchanges.get(req);
    if (!ex) return;
    ex.status = status;
    // The session named is not the caller's (or none): the row's `session` is only ever the caller's own.
    ex.ctx.sessionId = undefined;
  }

  /** MetaMCP's answer to a request given to `request` (called from the proxy's 'proxyRes'). */
  response(req: IncomingMessage, proxyRes: IncomingMessage): void {
    const ex = this.exchanges.get(req);
    if (!ex) return;
    const status = proxyRes.statusCode ?? 502;
    if (status >= 400) ex.status = status;
    const sid = proxyRes.headers["mcp-session-id"];
    if (typeof sid === "string" && sid !== "") ex.answerSession = sid;
    if (ex.status !== undefined) {
      // Drained by whoever relays it; the calls are decided by the status (or an error body) at its end.
      const tap = new BodyTap();
      proxyRes.on("data", (c: Buffer) => tap.add(c));
      proxyRes.once("end", () => {
        for (const a of answersInBody(tap)) this.answer(ex, a, tap.bytes);
        tap.release();
        this.finish(ex, undefined);
      });
      return;
    }
    if (ex.transport === "message") return; // 202: the answer comes on the session's stream
    // Nothing waits for an answer here (notifications, answers to the server's own requests): the body is not
    // looked at. The request body is in before its answer comes, but for a backend that answers early.
    if (ex.parsed && ex.pending.size === 0) return;
    const type = String(proxyRes.headers["content-type"] ?? "");
    if (type.includes("text/event-stream")) {
      const stop = this.watchStream(proxyRes, (data, bytes) => {
        for (const a of answersInText(data)) this.answer(ex, a, bytes);
        // Every reply is in: the rest of the stream (if any) is passed on unread.
        if (ex.parsed && ex.pending.size === 0) stop();
      });
      proxyRes.once("end", () => this.finish(ex, "the answer stream ended before the reply"));
      return;
    }
    const tap = new BodyTap();
    proxyRes.on("data", (c: Buffer) => tap.add(c));
    proxyRes.once("end", () => {
      for (const a of answersInBody(tap)) this.answer(ex, a, tap.bytes);
      tap.release();
      this.finish(ex, "the answer held no reply");
    });
  }

  /** The GET stream of an SSE session, from its first byte: its endpoint event names the session. */
  sseStream(proxyRes: IncomingMessage, res: ServerResponse): void {
    let sessionId: string | undefined;
    let s: SseSession | undefined;
    this.watchStream(
      proxyRes,
      (data, bytes, event) => {
        if (!s) {
          if (event !== "endpoint") return;
          sessionId = sessionIdFromEndpointEvent(`event: endpoint\ndata: ${data}`);
          if (!sessionId) return;
          s = { pending: new Map() };
          this.sseSessions.set(sessionId, s);
          return;
        }
        for (const a of answersInText(data)) {
          const call = s.pending.get(a.key);
          if (!call) continue;
          s.pending.delete(a.key);
          if (call.message.method === "initialize" && a.outcome === "ok")
            this.remember(sessionId, call.message.client);
          this.row(call, a.outcome, a.error ?? null, bytes);
        }
      },
      () => {
        // One answer too large to buffer: it is the one waiting when only one is (the usual client).
        if (s?.pending.size === 1) {
          const [key, call] = [...s.pending][0]!;
          s.pending.delete(key);
          this.row(call, "ok", null, MAX_STREAM_EVENT_CHARS);
        }
      },
    );
    const end = () => {
      if (!sessionId || !s) return;
      for (const call of s.pending.values())
        this.row(call, "cut", "the session's stream ended before the answer", null);
      s.pending.clear();
      if (this.sseSessions.get(sessionId) === s) this.sseSessions.delete(sessionId);
    };
    res.once("close", end);
  }

  /** Feeds the stream's events to `onData` until the returned function is called. */
  private watchStream(
    stream: IncomingMessage,
    onData: (data: string, bytes: number, event: string | undefined) => void,
    onOverflow?: () => void,
  ): () => void {
    const decoder = new StringDecoder("utf8");
    const parser = createParser({
      maxBufferSize: MAX_STREAM_EVENT_CHARS,
      onEvent: (e) => onData(e.data, Buffer.byteLength(e.data), e.event),
      onError: (err) => {
        if (err.type !== "max-buffer-size-exceeded") return;
        parser.reset();
        onOverflow?.();
      },
    });
    const feed = (c: Buffer) => {
      try {
        parser.feed(decoder.write(c));
      } catch {
        parser.reset();
      }
    };
    stream.on("data", feed);
    return () => {
      stream.off("data", feed);
    };
  }

  private parsed(ex: Exchange): void {
    if (ex.parsed) return;
    ex.parsed = true;
    const messages = requestsIn(ex.tap);
    if (messages.length === 0 && ex.status !== undefined && REFUSED.has(ex.status)) {
      // Refused before anything could be read (a probe of someone's session): still a row.
      messages.push({ key: "null", method: "unknown" });
    }
    const perCall = messages.length > 1 ? Math.round(ex.tap.bytes / messages.length) : ex.tap.bytes;
    ex.tap.release();
    for (const message of messages) {
      const call: Call = { message, ctx: ex.ctx, calledAt: ex.calledAt, t0: ex.t0, requestBytes: perCall };
      if (ex.transport === "message" && ex.status === undefined && ex.ctx.sessionId) {
        const s = this.sseSessions.get(ex.ctx.sessionId);
        if (s) {
          if (s.pending.size >= MAX_PENDING_PER_SESSION) {
            const [oldKey, old] = [...s.pending][0]!;
            s.pending.delete(oldKey);
            this.row(old, "cut", "too many requests waiting on this session", null);
          }
          s.pending.set(message.key, call);
          continue;
        }
      }
      ex.pending.set(message.key, call);
    }
  }

  private answer(ex: Exchange, a: AnswerMessage, bytes: number): void {
    const call = ex.pending.get(a.key);
    if (!call) return;
    ex.pending.delete(a.key);
    if (call.message.method === "initialize" && a.outcome === "ok")
      this.remember(ex.answerSession ?? ex.ctx.sessionId, call.message.client);
    this.row(call, a.outcome, a.error ?? null, bytes, ex.answerSession);
  }

  /** The exchange is over: whatever still waits is decided by the status, or was cut (`why`). */
  private finish(ex: Exchange, why: string | undefined): void {
    if (ex.done || !ex.parsed) return;
    if (ex.status === undefined && why === undefined && ex.transport === "message") {
      // A message POST answered 202 whose session has no stream we watch: decided by the status alone.
      for (const call of ex.pending.values()) this.row(call, "ok", null, null);
      ex.pending.clear();
      ex.done = true;
      return;
    }
    if (ex.status === undefined && why === undefined) return; // still streaming
    ex.done = true;
    for (const call of ex.pending.values()) {
      if (ex.status !== undefined)
        this.row(
          call,
          REFUSED.has(ex.status) ? "refused" : "protocol_error",
          `HTTP ${ex.status}`,
          null,
          ex.answerSession,
        );
      else this.row(call, "cut", why ?? null, null, ex.answerSession);
    }
    ex.pending.clear();
  }

  private hashOf(sessionId: string): string {
    let h = this.hashes.get(sessionId);
    if (h === undefined) {
      h = sessionHash(sessionId);
      this.hashes.set(sessionId, h);
      if (this.hashes.size > this.maxSessions) this.hashes.delete(this.hashes.keys().next().value!);
    }
    return h;
  }

  private remember(sessionId: string | undefined, client: string | undefined): void {
    if (!sessionId || !client) return;
    this.clients.delete(sessionId);
    this.clients.set(sessionId, client);
    if (this.clients.size > this.maxSessions) this.clients.delete(this.clients.keys().next().value!);
  }

  private row(
    call: Call,
    outcome: AuditOutcome,
    error: string | null,
    responseBytes: number | null,
    answerSession?: string,
  ): void {
    const sessionId = call.ctx.sessionId ?? answerSession;
    const m = call.message;
    const named = m.method === "tools/call" || m.method === "prompts/get";
    // A resource URI may carry a token in its query: masked like an error text, and capped.
    const { server, tool } =
      m.name && named ? splitToolName(m.name) : { server: null, tool: m.name ? shortError(m.name) : null };
    this.options.sink.record({
      calledAt: call.calledAt,
      principal: call.ctx.principal,
      endpoint: call.ctx.endpoint,
      namespace: call.ctx.namespace,
      server,
      tool,
      method: m.method,
      durationMs: Math.round((performance.now() - call.t0) * 100) / 100,
      outcome,
      error,
      client: m.client ?? (sessionId ? (this.clients.get(sessionId) ?? null) : null),
      session: sessionId ? this.hashOf(sessionId) : null,
      requestBytes: call.requestBytes,
      responseBytes,
      arguments: argumentsColumn(m.arguments, this.options.arguments),
    });
  }
}
