import { EXIT, UserError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";
import { processRuns } from "../process/alive.js";
import { loadOrCreateSecrets, localPaths, readRunState } from "./state.js";

/** `--user`'s value: an email, as the login page takes it (a name alone would be refused later, less clearly). */
export function localUserEmail(value: string): string {
  const email = value.trim();
  if (!/^[^\s@]+@[^\s@]+$/.test(email))
    throw new UserError(
      "invalid_option",
      `--user "${value}" is not an email: the local users are named by the email they signed in with`,
      EXIT.input,
      "use the email shown on the local login page",
    );
  return email.toLowerCase();
}

export interface LocalUserToken {
  /** An OAuth access token the local Apps proxy accepts, as a Databricks OAuth token is accepted there. */
  token: string;
  expiresAt: Date;
}

/**
 * A FRESH user token from the running local stand-in, the way `databricks auth token` gets one from a
 * workspace: `POST <workspace>/oidc/v1/token` (client_credentials) with the local CLI client whose id and
 * secret live in the state dir's secrets file (0600). Each call mints a new token (valid for the
 * stand-in's user-token lifetime, one hour unless `local up --token-ttl` shortens it), so a program that
 * holds one calls again before `expiresAt`. `email` picks a local user (default: the first one).
 */
export async function localUserToken(
  stateDir: string,
  options: { email?: string; fetch?: typeof fetch } = {},
): Promise<LocalUserToken> {
  const paths = localPaths(stateDir);
  const state = readRunState(paths);
  if (!state || !processRuns(state.supervisorPid) || state.status !== "healthy") {
    throw new UserError(
      "local_not_running",
      "the local app is not running: there is no token to get",
      EXIT.notRunning,
      "start it with `make local` (or `./bin/metamcp-databricks.js local up`)",
    );
  }
  const secrets = loadOrCreateSecrets(paths);
  const form = new URLSearchParams({ grant_type: "client_credentials", scope: "all-apis" });
  if (options.email) form.set("login_hint", options.email);
  const basic = Buffer.from(
    `${encodeURIComponent(secrets.userClientId)}:${encodeURIComponent(secrets.userClientSecret)}`,
  ).toString("base64");
  let res: Response;
  try {
    res = await (options.fetch ?? fetch)(`${state.workspaceUrl}/oidc/v1/token`, {
      method: "POST",
      headers: { authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" },
      body: form,
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new UserError(
      "local_unreachable",
      `the local Databricks stand-in at ${state.workspaceUrl} does not answer (${(err as Error).message})`,
      EXIT.notRunning,
      "check it with `make local ARGS=status` or restart it",
    );
  }
  const body = (await res.json().catch(() => ({}))) as {
    access_token?: string;
    expires_in?: number;
    error_description?: string;
  };
  if (options.email && res.status === 400 && /unknown user/.test(body.error_description ?? "")) {
    // As on Databricks, a token is only for a user the workspace knows: here, one who signed in once.
    throw new UserError(
      "local_unknown_user",
      `no local user ${options.email}: a local user exists once they signed in at the local login page`,
      EXIT.input,
      `open ${state.appUrl}/ in a browser and sign in as ${options.email}, then run this again`,
    );
  }
  if (!res.ok || !body.access_token) {
    throw new UserError(
      "local_token_refused",
      `the local stand-in refused a user token: ${body.error_description ?? `HTTP ${res.status}`}`,
      EXIT.input,
      "restart the local app (`local down`, then `local up`) so it knows this state dir's client",
    );
  }
  registerSecret(body.access_token);
  return {
    token: body.access_token,
    expiresAt: new Date(Date.now() + (body.expires_in ?? 3600) * 1000),
  };
}
