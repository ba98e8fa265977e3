import { readFileSync } from "node:fs";

export interface ProcessRunsOptions {
  /**
   * Count a zombie (exited, not reaped by its parent yet) as still there: for a wait that must end only
   * when the pid is gone for every observer (`local down` returns, then nothing answers to that pid).
   */
  zombieCounts?: boolean;
}

/**
 * Whether `pid` is a process of this machine that still runs: the one pid check of the CLI. A process of
 * another user counts (kill(0) says EPERM: it exists, we may not signal it); a zombie does not (it still
 * answers kill(0), but it is gone all the same) unless `zombieCounts`.
 */
export function processRuns(pid: number | undefined, options: ProcessRunsOptions = {}): boolean {
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  if (options.zombieCounts) return true;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    // No /proc (macOS): kill(0) is all there is to go by.
    return true;
  }
}
