import { randomBytes } from "node:crypto";
import { DatabricksError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";
import { apiFailure, isNotFound, type Workspace } from "./workspace.js";

export type SecretOutcome = "created" | "kept";

/** 48 random bytes from the CSPRNG, base64url: far above better-auth's 32-character minimum. */
export function generateAuthSecret(): string {
  const value = randomBytes(48).toString("base64url");
  registerSecret(value);
  return value;
}

/**
 * Makes sure the scope holds BETTER_AUTH_SECRET: generated once when absent, never overwritten (sessions
 * and encrypted data depend on it), never printed. The value goes in a request body, not on a command line.
 */
export async function ensureAuthSecret(
  ws: Workspace,
  scope: string,
  key: string,
  target: string,
): Promise<SecretOutcome> {
  const keys: string[] = [];
  try {
    for await (const s of ws.client.secrets.listSecrets({ scope })) if (s.key) keys.push(s.key);
  } catch (err) {
    if (isNotFound(err)) {
      throw new DatabricksError(
        "secret_scope_missing",
        `secret scope ${scope} does not exist`,
        `the bundle creates it: run \`make bundle-deploy TARGET=${target}\``,
      );
    }
    throw apiFailure(`listing secret scope ${scope}`, err);
  }
  if (keys.includes(key)) return "kept";
  try {
    await ws.client.secrets.putSecret({ scope, key, string_value: generateAuthSecret() });
  } catch (err) {
    throw apiFailure(`writing ${key} into secret scope ${scope}`, err);
  }
  return "created";
}

/** True when the key is in the scope (app-deploy checks before deploying an app that would not start). */
export async function authSecretExists(ws: Workspace, scope: string, key: string): Promise<boolean> {
  try {
    for await (const s of ws.client.secrets.listSecrets({ scope })) if (s.key === key) return true;
    return false;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw apiFailure(`listing secret scope ${scope}`, err);
  }
}
