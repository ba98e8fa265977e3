import { UserError } from "../errors.js";
import { localPaths, readRunState } from "../local/state.js";

/**
 * A user token for the local Apps proxy, from the running stand-in.
 * (Until the stand-in mints expiring tokens, this is the token `local up` recorded for the run.)
 */
export async function mintLocalToken(stateDir: string): Promise<{ token: string; expiresAt: number }> {
  const state = readRunState(localPaths(stateDir));
  if (!state?.token) {
    throw new UserError(
      "local_not_running",
      `the local app is not running (state dir ${stateDir}): no token to use`,
      3,
      "start it with `make local`",
    );
  }
  return { token: state.token, expiresAt: Date.now() + 3600_000 };
}
