import type { Config } from "../config/load.js";
import type { Logger } from "../log/logger.js";
import { processRuns } from "../process/alive.js";
import { type LocalRunState, localPaths, readRunState } from "./state.js";

/**
 * What the local commands hand their results to: progress lines go to `log`, the command's result to
 * `result` (JSON with --json, else the human text). The CLI's command context is one.
 */
export interface CommandOutput {
  log: Logger;
  result(value: unknown, human?: string | (() => string)): void;
}

/**
 * What `up` and `status` print: the run state. It holds no token (only `local token` gives one); a run
 * state written by an older version may still carry one, which is never shown.
 */
export function publicState(state: LocalRunState): LocalRunState {
  const { token: _old, ...rest } = state as LocalRunState & { token?: string };
  return rest;
}

/** The run state and whether its supervisor still runs. */
export function currentRun(config: Config): { state?: LocalRunState; running: boolean } {
  const paths = localPaths(config.local.stateDir);
  const state = readRunState(paths);
  return { state, running: !!state && processRuns(state.supervisorPid) };
}
