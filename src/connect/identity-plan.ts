import type { Logger } from "../log/logger.js";
import { type AuthMode, type EndpointIdentityState, getEndpointIdentity } from "./identity.js";
import { type ConnectTarget, tokenSourceFor, tokenUserLabel } from "./target.js";

/**
 * Whether the configs `connect` prints need a MetaMCP key: `--auth` decides when given; otherwise the app is
 * asked (with the user's own Databricks token). When the app can't say (an older tool's tree, a MetaMCP
 * release without the feature), the key stays needed, as before.
 */
export async function decideIdentity(input: {
  auth?: AuthMode;
  appUrl: string;
  endpoint: string;
  target: ConnectTarget;
  log: Logger;
}): Promise<{ accepts: boolean; why: string }> {
  if (input.auth === "identity") return { accepts: true, why: "--auth identity" };
  if (input.auth === "key") return { accepts: false, why: "--auth key" };
  try {
    const state = await getEndpointIdentity(input.appUrl, input.endpoint, await tokenSourceFor(input.target));
    return {
      accepts: state.acceptIdentity,
      why: state.explicit ? "set by its owner" : "the app's default for new endpoints",
    };
  } catch (err) {
    // Locally the token is one local user's: asking about another user's endpoint is refused, so say whose.
    const who = tokenUserLabel(input.target);
    const asWho = who ? ` with a token for ${who}` : "";
    const other =
      input.target.kind === "local"
        ? `; if ${input.endpoint} is another local user's, add --user <their email>`
        : "";
    input.log.warn(
      `could not ask the app${asWho} whether ${input.endpoint} accepts the Databricks identity (${(err as Error).message}): configs use a MetaMCP API key${other}`,
    );
    return { accepts: false, why: "unknown" };
  }
}

/** What `connect <endpoint> --identity on|off` prints. */
export function describeIdentityState(
  state: EndpointIdentityState,
  bin: string,
  target: ConnectTarget,
): string {
  const where = target.kind === "local" ? "--local" : `--target ${target.target}`;
  return state.acceptIdentity
    ? [
        `${state.endpoint} now accepts the Databricks identity: an MCP client needs only a Databricks token (no MetaMCP API key).`,
        `next: node ${bin} connect ${state.endpoint} ${where} --write`,
      ].join("\n")
    : [
        `${state.endpoint} no longer accepts the Databricks identity: MCP clients need a MetaMCP API key again.`,
        `next: node ${bin} connect ${state.endpoint} ${where} --save-key < key.txt`,
      ].join("\n");
}
