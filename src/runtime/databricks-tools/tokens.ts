import { retry } from "../../retry.js";

export interface IssuedToken {
  token: string;
  expiresAt: Date;
}

export interface KeeperLog {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export type CurrentToken = { ok: true; token: string } | { ok: false; reason: string };

/** Renewal retries back off up to this. */
const MAX_RENEW_WAIT_MS = 15_000;

/**
 * The app's own workspace token for Databricks' managed MCP servers (docs/databricks-tools.md): the service
 * principal's `all-apis` M2M token (AppPlatformClient.issueToken). Renewed in the background at `renewAt` of
 * its lifetime, so a tool call never waits on the token endpoint and never carries a token about to expire.
 * A renewal that fails is retried (backing off to 15 s) while the current token keeps serving; only once it
 * has expired does `current()` give the reason instead, which the gateway answers as a 503.
 */
export class WorkspaceTokenKeeper {
  private issued: IssuedToken | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly stopping = new AbortController();
  private lastError: string | undefined;
  renewals = 0;

  constructor(
    private readonly issue: () => Promise<IssuedToken>,
    private readonly log: KeeperLog,
    private readonly renewAt = 0.6,
  ) {}

  /** Starts getting the first token (retried until one comes or stop); returns at once. */
  start(): void {
    void this.renew();
  }

  current(): CurrentToken {
    const why = this.lastError ? `: ${this.lastError}` : "";
    if (!this.issued)
      return {
        ok: false,
        reason: `the app's workspace token is not available yet${why || " (the first one is being requested)"}`,
      };
    if (this.issued.expiresAt.getTime() <= Date.now())
      return {
        ok: false,
        reason: `the app's workspace token expired at ${this.issued.expiresAt.toISOString()} and could not be renewed${why}`,
      };
    return { ok: true, token: this.issued.token };
  }

  stop(): void {
    this.stopped = true;
    this.stopping.abort();
    if (this.timer) clearTimeout(this.timer);
  }

  private async renew(): Promise<void> {
    let next: IssuedToken;
    try {
      next = await retry(() => this.issue(), {
        firstWaitMs: 500,
        maxWaitMs: MAX_RENEW_WAIT_MS,
        signal: this.stopping.signal,
        retryable: () => !this.stopped,
        onRetry: (err, waitMs) => {
          this.lastError = (err as Error).message;
          const serving = this.current().ok
            ? `; still serving the current one until ${this.issued?.expiresAt.toISOString()}`
            : "";
          this.log.warn(
            `workspace token for Databricks tools: renewal failed (${this.lastError}); retrying in ${waitMs / 1000} s${serving}`,
          );
        },
      });
    } catch (err) {
      if (!this.stopped)
        this.log.error(`workspace token for Databricks tools: renewal stopped: ${(err as Error).message}`);
      return;
    }
    if (this.stopped) return;
    const first = !this.issued;
    this.issued = next;
    this.lastError = undefined;
    if (!first) this.renewals++;
    this.log.info(
      `workspace token for Databricks tools ${first ? "issued" : "renewed"}, valid until ${next.expiresAt.toISOString()}`,
    );
    const lifetime = next.expiresAt.getTime() - Date.now();
    this.timer = setTimeout(() => void this.renew(), Math.max(500, Math.floor(lifetime * this.renewAt)));
    this.timer.unref();
  }
}
