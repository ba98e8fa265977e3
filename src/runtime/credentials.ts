import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { DatabricksError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import type { DatabaseCredential } from "./workspace-client.js";

/**
 * Keeps a current Lakebase credential. Lakebase checks the password only at login and it expires after
 * an hour, so the credential is renewed well before expiry and every NEW connection reads the current
 * one: ours through `current()`, MetaMCP's backend (another process) through a 0600 file rewritten
 * atomically (the db-pool-credentials patch reads it per connection).
 */
export class CredentialKeeper {
  private credential: DatabaseCredential | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  readonly passwordFile: string;
  private readonly dir: string;
  renewals = 0;

  constructor(
    private readonly fetchCredential: () => Promise<DatabaseCredential>,
    private readonly log: Logger,
    /** Renew when this fraction of the lifetime has passed. */
    private readonly renewAt = 0.6,
  ) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), "metamcp-cred-"));
    this.passwordFile = path.join(this.dir, "pgpassword");
  }

  current(): string {
    if (!this.credential) throw new Error("no database credential yet");
    return this.credential.token;
  }

  get expiresAt(): Date | undefined {
    return this.credential?.expiresAt;
  }

  /** First credential: config errors (refused, not found) fail at once; network errors retry until the deadline. */
  async start(deadlineMs = 60_000): Promise<void> {
    const until = Date.now() + deadlineMs;
    let wait = 1000;
    for (;;) {
      try {
        this.install(await this.fetchCredential());
        break;
      } catch (err) {
        const retryable =
          err instanceof DatabricksError &&
          (err.code === "workspace_unreachable" || err.code === "api_error");
        if (!retryable || Date.now() + wait > until) throw err;
        this.log.warn(`database credential: ${(err as Error).message}; retrying in ${wait / 1000} s`);
        await delay(wait);
        wait = Math.min(wait * 2, 15_000);
      }
    }
    this.schedule();
  }

  private install(c: DatabaseCredential): void {
    this.credential = c;
    const tmp = `${this.passwordFile}.tmp`;
    writeFileSync(tmp, c.token, { mode: 0o600 });
    renameSync(tmp, this.passwordFile);
  }

  private schedule(): void {
    if (this.stopped || !this.credential) return;
    const lifetime = this.credential.expiresAt.getTime() - Date.now();
    const inMs = Math.max(500, Math.floor(lifetime * this.renewAt));
    this.timer = setTimeout(() => void this.renew(), inMs);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    let wait = 500;
    while (!this.stopped) {
      try {
        this.install(await this.fetchCredential());
        this.renewals++;
        this.log.info(
          `database credential renewed (#${this.renewals}), valid until ${this.credential!.expiresAt.toISOString()}`,
        );
        this.schedule();
        return;
      } catch (err) {
        const left = (this.credential?.expiresAt.getTime() ?? 0) - Date.now();
        this.log.warn(
          `database credential renewal failed: ${(err as Error).message}; retrying in ${wait / 1000} s (current one valid ${Math.max(0, Math.round(left / 1000))} s more; open connections keep working)`,
        );
        await delay(wait);
        wait = Math.min(wait * 2, 30_000);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
