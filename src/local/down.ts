import type { Config } from "../config/load.js";
import { processRuns } from "../process/alive.js";
import { waitFor } from "../retry.js";
import { findLeftovers, stopLeftovers } from "./leftovers.js";
import type { CommandOutput } from "./run-info.js";
import {
  clearRunState,
  localPaths,
  lockOwner,
  readRunState,
  runsProgram,
  SUPERVISOR_WORDS,
} from "./state.js";

/** local down: stops the supervisor, then whatever it left (each checked to still be that program). */
export async function localDown(config: Config, out: CommandOutput): Promise<number> {
  const paths = localPaths(config.local.stateDir);
  const state = readRunState(paths);
  // The supervisor: from run.json, or (while it is still starting, or when run.json is damaged) the lock.
  const supervisor = [state?.supervisorPid, lockOwner(paths)].find(
    (pid) => pid !== undefined && pid !== process.pid && runsProgram(pid, SUPERVISOR_WORDS),
  );
  if (supervisor !== undefined) {
    process.kill(supervisor, "SIGTERM");
    await waitFor(() => (processRuns(supervisor, { zombieCounts: true }) ? undefined : true), {
      timeoutMs: 30_000,
      what: `the local supervisor (pid ${supervisor}) to stop`,
    }).catch(() => {
      if (processRuns(supervisor)) process.kill(supervisor, "SIGKILL");
    });
  }
  // What is left: the recorded app and our data dir's PostgreSQL, each checked to still be that program.
  const leftovers = findLeftovers(paths, readRunState(paths) ?? state);
  await stopLeftovers(leftovers);
  clearRunState(paths);
  const stopped = [...(supervisor ? [supervisor] : []), ...leftovers.map((l) => l.pid)];
  out.result(
    { stopped: stopped.length > 0, pids: stopped },
    supervisor
      ? "stopped"
      : leftovers.length
        ? `stopped leftovers: ${leftovers.map((l) => `${l.what} (pid ${l.pid})`).join(", ")}`
        : "nothing is running",
  );
  return 0;
}
