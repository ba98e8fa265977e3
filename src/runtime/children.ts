import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import type { Logger } from "../log/logger.js";
import { childLogLevel } from "./child-log-level.js";
import { condenseIdLists } from "./child-log-lines.js";
import { encodeChildSecrets, SECRETS_FD, SECRETS_FD_ENV } from "./child-secrets.js";

export interface ChildSpec {
  name: string;
  /** A Node.js binary when `handOver` is set (the preload is given with `--import`). */
  command: string;
  args: string[];
  cwd: string;
  /** The child's initial environment: readable by every process of the app's user (/proc/<pid>/environ). */
  env: Record<string, string>;
  /** Secrets handed over on a pipe to `preload` (child-secrets.ts), at every (re)start, never in `env`. */
  handOver?: { preload: string; secrets: Record<string, string> };
  /** Lines of the child's not relayed to the app's log (child-log-lines.ts). */
  quietLines?: RegExp;
}

/**
 * One supervised child (MetaMCP's backend or frontend). ANY exit — code 0 included — is unexpected
 * while the app runs: it is logged and restarted with backoff, and after too many restarts in a short
 * window the whole app goes down non-zero so the platform shows it as crashed.
 */
export class SupervisedChild {
  private child: ChildProcess | undefined;
  private stopping = false;
  private restarts: number[] = [];
  private onFatal: ((reason: string) => void) | undefined;
  private starts = 0;
  private exits = 0;

  constructor(
    readonly spec: ChildSpec,
    private readonly log: Logger,
    private readonly maxRestarts = 5,
    private readonly windowMs = 120_000,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Changes at every start and every exit of the process: whatever lived in its memory (MetaMCP's MCP
   * sessions) is gone once it differs (session-continuity.ts). Counted at the exit too, so requests that come
   * while the child is restarting already know.
   */
  get generation(): number {
    return this.starts + this.exits;
  }

  start(onFatal: (reason: string) => void): void {
    this.onFatal = onFatal;
    this.spawnOnce();
  }

  private spawnOnce(): void {
    const { spec, log } = this;
    const handOver = spec.handOver;
    const child = spawn(
      spec.command,
      handOver ? ["--import", pathToFileURL(handOver.preload).href, ...spec.args] : spec.args,
      {
        cwd: spec.cwd,
        env: handOver ? { ...spec.env, [SECRETS_FD_ENV]: String(SECRETS_FD) } : spec.env,
        stdio: handOver ? ["ignore", "pipe", "pipe", "pipe"] : ["ignore", "pipe", "pipe"],
      },
    );
    this.child = child;
    this.starts++;
    if (handOver) {
      const pipe = child.stdio[SECRETS_FD] as Writable | null;
      // A child that dies before reading closes its end: its exit is reported below, not this write's EPIPE.
      pipe?.on("error", () => {});
      pipe?.end(encodeChildSecrets(handOver.secrets));
    }
    for (const source of ["stdout", "stderr"] as const) {
      const stream = child[source];
      if (!stream) continue;
      const lines = condenseIdLists((line) => log[childLogLevel(source, line)](line), {
        drop: spec.quietLines,
      });
      createInterface({ input: stream }).on("line", lines.line).on("close", lines.end);
    }
    child.once("error", (err) => log.error(`could not start: ${err.message}`));
    child.once("exit", (code, signal) => {
      this.exits++;
      // A stop of the whole process group (`kill -- -PGID`, the platform stopping the app) reaches the
      // child and us together, and the child's exit may be seen first: decide after the signals that
      // came with it were handled, so the child is not restarted in the middle of our own stop.
      setImmediate(() => this.onExit(code, signal));
    });
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    const { spec, log } = this;
    if (this.stopping) return;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < this.windowMs);
    if (this.restarts.length >= this.maxRestarts) {
      this.onFatal?.(
        `${spec.name} exited (${how}) ${this.restarts.length + 1} times within ${this.windowMs / 1000} s`,
      );
      return;
    }
    const backoff = Math.min(500 * 2 ** this.restarts.length, 15_000);
    this.restarts.push(now);
    log.error(
      `${spec.name} exited unexpectedly (${how}${code === 0 ? ": a clean exit is still a failure here" : ""}); restarting in ${backoff / 1000} s`,
    );
    setTimeout(() => {
      if (!this.stopping) this.spawnOnce();
    }, backoff).unref();
  }

  /**
   * From now on an exit is part of the stop, never restarted. Called first thing in a shutdown, before the
   * requests still open drain: the children may already be dying of the same signal.
   */
  markStopping(): void {
    this.stopping = true;
  }

  /** At once and synchronously (the process is exiting): SIGKILL, so nothing outlives us. */
  killNow(): void {
    this.stopping = true;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await gone;
    clearTimeout(timer);
  }
}
