import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { execa } from "execa";
import { killGroup } from "./process-group.js";

export { killGroup } from "./process-group.js";

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
  const child = execa(cmd, args, {
    cwd: options.cwd,
    env: options.env,
    // The platform's environment only: nothing of ours leaks into the app.
    extendEnv: false,
    stdin: "ignore",
    detached: true,
    // Lines go to `onLine` as they come; nothing is kept in memory for the app's whole life.
    buffer: false,
    reject: false,
    // stop() decides when to escalate (the runtime's own shutdown takes up to 12 s), and kills the group.
    forceKillAfterDelay: false,
  });
  for (const source of ["stdout", "stderr"] as const) {
    createInterface({ input: child[source] }).on("line", (line) => options.onLine(source, line));
  }
  const exited: Promise<AppProcessExit> = child.then((r) =>
    r.exitCode === undefined && !r.signal
      ? { code: 127, signal: null } // could not be started
      : { code: r.exitCode ?? null, signal: (r.signal as NodeJS.Signals | undefined) ?? null },
  );
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
