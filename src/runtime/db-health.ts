import pg from "pg";
import type { Logger } from "../log/logger.js";
import { describePgError } from "./database.js";

/** What the health check needs of the credential keeper. */
export interface CredentialState {
  readonly expired: boolean;
  readonly expiresAt: Date | undefined;
  readonly lastRenewalError: string | undefined;
}

/**
 * The truth behind `/metamcp/health`: can the app open a NEW database connection right now? Upstream's
 * route answers 200 without touching the database, so an expired credential or a database that is down
 * would look healthy while every request that needs the database fails. One probe at a time, its answer
 * reused for `cacheMs` (health is polled); transitions are logged once each way.
 */
export class DatabaseHealth {
  private last: { at: number; problem: string | undefined } | undefined;
  private inflight: Promise<string | undefined> | undefined;
  private reported: string | undefined;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly credential: CredentialState,
    private readonly log: Logger,
    private readonly cacheMs = 2000,
    private readonly timeoutMs = 5000,
  ) {}

  /** Why no database connection can be opened, or undefined when one can. */
  async problem(): Promise<string | undefined> {
    if (this.last && Date.now() - this.last.at < this.cacheMs) return this.last.problem;
    this.inflight ??= this.probe().finally(() => {
      this.inflight = undefined;
    });
    return await this.inflight;
  }

  private async probe(): Promise<string | undefined> {
    // The connection decides, not our clock: a credential that looks expired (clock skew) but still logs in
    // is healthy; when the login fails and the credential is past its expiry, that is the reason to give.
    let problem: string | undefined;
    const client = new pg.Client({ ...this.config, connectionTimeoutMillis: this.timeoutMs });
    client.on("error", () => {}); // the probe's own connection dropping is answered below
    try {
      await client.connect();
      await client.query("SELECT 1");
    } catch (err) {
      problem = this.credential.expired
        ? `the database credential expired at ${this.credential.expiresAt?.toISOString()} and could not be renewed${this.credential.lastRenewalError ? ` (${this.credential.lastRenewalError})` : ""}: new database connections fail (${describePgError(err)})`
        : `cannot open a database connection: ${describePgError(err)}`;
    } finally {
      await client.end().catch(() => {});
    }
    this.last = { at: Date.now(), problem };
    if (problem && this.reported !== problem) this.log.error(`unhealthy: ${problem}`);
    if (!problem && this.reported) this.log.success("healthy again: database connections open");
    this.reported = problem;
    return problem;
  }
}
