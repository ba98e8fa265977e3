import {
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { DatabricksError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { retry } from "../retry.js";
import type { DatabaseCredential } from "./platform-client.js";

/** Our credential folders in the temp dir: `metamcp-cred-XXXXXX`, each with an `owner` file. */
export const CREDENTIAL_DIR_PREFIX = "metamcp-cred-";
const OWNER_FILE = "owner";
const PASSWORD_FILE = "pgpassword";
/** Every name we ever write in a credential folder: a folder holding anything else is not (only) ours. */
const OUR_FILES = new Set([OWNER_FILE, PASSWORD_FILE, `${PASSWORD_FILE}.tmp`]);
/** How often the error "expired and not renewed" is repeated while it lasts. */
const ESCALATION_REPEAT_MS = 5 * 60_000;
/** Renewal retries back off up to this (also the bound for credentials issued already expired). */
const MAX_RENEW_WAIT_MS = 15_000;

/** A process's start time (clock ticks since boot, /proc/<pid>/stat field 22): tells a reused PID apart. */
function processStartTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** True unless `pid` is certainly gone (or now another process): when unsure, it counts as alive. */
function ownerAlive(pid: number, startTicks: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
  const now = processStartTicks(pid);
  return !(startTicks && now && now !== startTicks);
}

/**
 * Removes credential folders that earlier runs of ours left behind (a SIGKILL, a crash of the machine):
 * each holds a live database token until it expires. Only folders that are certainly ours AND dead go:
 * our prefix, a real directory (not a link) owned by this user, an `owner` file naming a process that no
 * longer runs, nothing inside but the files we write. Anything else is left alone.
 */
export function removeLeftoverCredentialDirs(tmpDir: string = os.tmpdir()): string[] {
  const removed: string[] = [];
  const uid = process.getuid?.();
  let names: string[];
  try {
    names = readdirSync(tmpDir);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(CREDENTIAL_DIR_PREFIX)) continue;
    const dir = path.join(tmpDir, name);
    try {
      const st = lstatSync(dir);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      const entries = readdirSync(dir);
      if (!entries.includes(OWNER_FILE) || entries.some((e) => !OUR_FILES.has(e))) continue;
      const owner = JSON.parse(readFileSync(path.join(dir, OWNER_FILE), "utf8")) as {
        pid?: unknown;
        start?: unknown;
      };
      if (typeof owner.pid !== "number" || owner.pid === process.pid) continue;
      if (ownerAlive(owner.pid, typeof owner.start === "string" ? owner.start : undefined)) continue;
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // unreadable or vanished meanwhile: not provably ours, leave it
    }
  }
  return removed;
}

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
  private readonly stopping = new AbortController();
  readonly passwordFile: string;
  private readonly dir: string;
  renewals = 0;
  /** Why the last renewal failed, while it keeps failing (for health and the escalation). */
  lastRenewalError: string | undefined;
  private escalatedAt = 0;
  /** Consecutive credentials that came already expired (clock skew or a Databricks-side fault). */
  private expiredOnArrival = 0;

  constructor(
    private readonly fetchCredential: () => Promise<DatabaseCredential>,
    private readonly log: Logger,
    /** Renew when this fraction of the lifetime has passed. */
    private readonly renewAt = 0.6,
    tmpDir: string = os.tmpdir(),
  ) {
    this.dir = mkdtempSync(path.join(tmpDir, CREDENTIAL_DIR_PREFIX));
    this.passwordFile = path.join(this.dir, PASSWORD_FILE);
    // Who made the folder, so a later start can tell a dead run's leftover from a live one.
    writeFileSync(
      path.join(this.dir, OWNER_FILE),
      JSON.stringify({ pid: process.pid, start: processStartTicks(process.pid) }),
      { mode: 0o600 },
    );
  }

  current(): string {
    if (!this.credential) throw new Error("no database credential yet");
    return this.credential.token;
  }

  get expiresAt(): Date | undefined {
    return this.credential?.expiresAt;
  }

  /** The current credential is past its expiry: PostgreSQL refuses every new login with it. */
  get expired(): boolean {
    return this.credential !== undefined && this.credential.expiresAt.getTime() <= Date.now();
  }

  /** First credential: config errors (refused, not found) fail at once; network errors retry until the deadline. */
  async start(deadlineMs = 60_000, signal?: AbortSignal): Promise<void> {
    const credential = await retry(() => this.fetchCredential(), {
      firstWaitMs: 1000,
      maxWaitMs: MAX_RENEW_WAIT_MS,
      deadlineMs,
      signal,
      retryable: (err) =>
        err instanceof DatabricksError && (err.code === "workspace_unreachable" || err.code === "api_error"),
      onRetry: (err, waitMs) =>
        this.log.warn(`database credential: ${(err as Error).message}; retrying in ${waitMs / 1000} s`),
    });
    this.install(credential);
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
    let inMs: number;
    if (lifetime <= 0) {
      // Renewing at once would get the same again, every half second: back off, and say what is wrong.
      inMs = Math.min(1000 * 2 ** this.expiredOnArrival, MAX_RENEW_WAIT_MS);
      this.expiredOnArrival++;
      this.log.warn(
        `the database credential Databricks issued expires at ${this.credential.expiresAt.toISOString()}, already past on this clock (${new Date().toISOString()}): a clock skew or a Databricks-side problem; trying again in ${inMs / 1000} s`,
      );
    } else {
      this.expiredOnArrival = 0;
      inMs = Math.max(500, Math.floor(lifetime * this.renewAt));
    }
    this.timer = setTimeout(() => void this.renew(), inMs);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    let credential: DatabaseCredential;
    try {
      // Every failure is retried (500 ms doubling to 15 s) until one succeeds or we are stopped.
      credential = await retry(() => this.fetchCredential(), {
        firstWaitMs: 500,
        maxWaitMs: MAX_RENEW_WAIT_MS,
        signal: this.stopping.signal,
        retryable: () => !this.stopped,
        onRetry: (err, waitMs) => this.renewalFailed(err, waitMs),
      });
    } catch (err) {
      // Only a stop ends the retries; anything else here is a bug: said, never swallowed.
      if (!this.stopped) this.log.error(`database credential renewal stopped: ${(err as Error).message}`);
      return;
    }
    if (this.stopped) return;
    const wasExpired = this.expired && this.escalatedAt > 0;
    this.install(credential);
    this.renewals++;
    this.lastRenewalError = undefined;
    this.escalatedAt = 0;
    const until = credential.expiresAt.toISOString();
    if (wasExpired)
      this.log.success(
        `database credential renewed (#${this.renewals}) after it had expired: new database connections work again (valid until ${until})`,
      );
    else this.log.info(`database credential renewed (#${this.renewals}), valid until ${until}`);
    this.schedule();
  }

  /** A renewal failed (it is retried): a warning while the current one is valid, an error once expired. */
  private renewalFailed(err: unknown, waitMs: number): void {
    const message = (err as Error).message;
    this.lastRenewalError = message;
    const left = (this.credential?.expiresAt.getTime() ?? 0) - Date.now();
    if (left > 0) {
      this.log.warn(
        `database credential renewal failed: ${message}; retrying in ${waitMs / 1000} s (current one valid ${Math.round(left / 1000)} s more; open connections keep working)`,
      );
    } else if (Date.now() - this.escalatedAt >= ESCALATION_REPEAT_MS) {
      // Past expiry every NEW connection fails: this is an outage, not a warning.
      this.escalatedAt = Date.now();
      this.log.error(
        `the Lakebase credential expired at ${this.credential?.expiresAt.toISOString()} and renewing it keeps failing (${message}): every new database connection fails and /metamcp/health answers 503 until a renewal succeeds (retried every ${MAX_RENEW_WAIT_MS / 1000} s at most). Check that the app's service principal can still get database credentials: the app's database resource and its permission, and the Lakebase database's state (\`make app-status\`, \`make app-logs\`).`,
      );
    }
  }

  /** Removes the credential file (synchronous: also called from the process's 'exit' handler). */
  removeFiles(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  stop(): void {
    this.stopped = true;
    this.stopping.abort();
    if (this.timer) clearTimeout(this.timer);
    this.removeFiles();
  }
}
