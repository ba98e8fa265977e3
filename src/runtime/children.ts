import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { Logger } from "../log/logger.js";
import { childLogLevel } from "./child-log-level.js";

export interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
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

  constructor(
    readonly spec: ChildSpec,
    private readonly log: Logger,
    private readonly maxRestarts = 5,
    private readonly windowMs = 120_000,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(onFatal: (reason: string) => void): void {
    this.onFatal = onFatal;
    this.spawnOnce();
  }

  private spawnOnce(): void {
    const { spec, log } = this;
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    for (const source of ["stdout", "stderr"] as const) {
      const stream = child[source];
      if (stream)
        createInterface({ input: stream }).on("line", (line) => log[childLogLevel(source, line)](line));
    }
    child.once("error", (err) => log.error(`could not start: ${err.message}`));
    child.once("exit", (code, signal) => {
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
    });
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
