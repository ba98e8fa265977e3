import type { Config } from "../config/load.js";
import { localUserToken } from "./user-token.js";

/**
 * Prints a FRESH user token for the local Apps proxy alone on stdout, for `TOKEN=$(... local token)`:
 * minted by the running stand-in (one hour unless `--token-ttl`), never written to logs or state files.
 */
export async function localToken(
  config: Config,
  write: (text: string) => void,
  email?: string,
): Promise<number> {
  const { token } = await localUserToken(config.local.stateDir, email ? { email } : {});
  write(`${token}\n`);
  return 0;
}
