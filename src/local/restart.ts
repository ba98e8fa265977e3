import type { Config } from "../config/load.js";
import { EXIT, UserError } from "../errors.js";
import { waitFor } from "../retry.js";
import { cliCommand } from "./printed.js";
import type { CommandOutput } from "./run-info.js";
import { localPaths, readRunState, runsProgram, SUPERVISOR_WORDS } from "./state.js";

/**
 * local restart --rolling: the running `local up` replaces the app's instances one at a time (out of the
 * stand-in proxy's rotation, stopped, started again, healthy, back in), as the platform's rolling deploy does
 * (docs/scaling.md). Asked with SIGUSR2; done when the run state says so.
 */
export async function localRestartRolling(
  config: Config,
  out: CommandOutput,
  timeoutMs = 10 * 60_000,
): Promise<number> {
  const paths = localPaths(config.local.stateDir);
  const state = readRunState(paths);
  if (state?.status !== "healthy" || !runsProgram(state.supervisorPid, SUPERVISOR_WORDS))
    throw new UserError(
      "local_not_running",
      "the local app is not running (or not healthy yet)",
      EXIT.notRunning,
      `start it with \`${cliCommand("local up --detach")}\``,
    );
  const before = [state.rolledAt, state.rollingError];
  process.kill(state.supervisorPid, "SIGUSR2");
  const after = await waitFor(
    () => {
      const now = readRunState(paths);
      if (!now || now.supervisorPid !== state.supervisorPid)
        throw new UserError(
          "local_stopped",
          "the local app stopped during the rolling restart",
          EXIT.unhealthy,
        );
      if (now.rollingError !== undefined && now.rollingError !== before[1])
        throw new UserError(
          "rolling_restart_failed",
          `the rolling restart failed: ${now.rollingError}`,
          EXIT.unhealthy,
        );
      return now.rolledAt !== undefined && now.rolledAt !== before[0] ? now : undefined;
    },
    { timeoutMs, what: "every instance to be replaced", intervalMs: 200 },
  );
  const pids = after.instances?.map((i) => i.pid) ?? [after.appPid];
  out.result(
    { restarted: true, instances: pids.length, pids, rolledAt: after.rolledAt },
    `replaced ${pids.length} instance(s) one at a time (pids ${pids.join(", ")})`,
  );
  return 0;
}
