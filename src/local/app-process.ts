import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

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
  const child = spawn(cmd, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
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
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
