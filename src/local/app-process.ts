import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

/** Signals a whole process group (the app and whatever it started); a gone group is fine. */
export function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

export interface AppProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface AppProcess {
  pid: number;
  child: ChildProcess;
  exited: Promise<AppProcessExit>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<AppProcessExit>;
}

/**
 * Runs the app tree's own `app.yaml` command the way the platform does: no shell, the platform's
 * environment only (nothing inherited but PATH/HOME), every output line handed to `onLine`.
 */
export function spawnAppProcess(options: {
  command: string[];
  cwd: string;
  env: Record<string, string>;
  onLine: (source: "stdout" | "stderr", line: string) => void;
}): AppProcess {
  const [cmd, ...args] = options.command;
  if (!cmd) throw new Error("empty app command");
  // Its own process group: if the app's runtime dies hard, its children still go with a group kill.
  const child = spawn(cmd, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  for (const source of ["stdout", "stderr"] as const) {
    const stream = child[source];
    if (stream) createInterface({ input: stream }).on("line", (line) => options.onLine(source, line));
  }
  const exited = new Promise<AppProcessExit>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", () => resolve({ code: 127, signal: null }));
  });
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  return {
    pid: child.pid,
    child,
    exited,
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill("SIGTERM");
      const timer = setTimeout(() => killGroup(child.pid, "SIGKILL"), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
        killGroup(child.pid, "SIGKILL");
      }
    },
  };
}
