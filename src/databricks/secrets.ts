import { randomBytes } from "node:crypto";
import { ApiError } from "@databricks/sdk-experimental";
import { DatabricksError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";
import type { DatabricksCli } from "./cli.js";
import { apiFailure, isNotFound, type Workspace } from "./workspace.js";

export type SecretOutcome = "created" | "kept";

export interface AuthSecretResult {
  /** Whether the key was generated now or already there. */
  secret: SecretOutcome;
  /** Whether we created the scope now (false: it existed, ours from an earlier run or the user's). */
  scopeCreated: boolean;
}

/**
 * A key we put in every scope WE create, so `destroy` can tell our scope from one the user made and
 * named in SECRET_SCOPE (scopes carry no tags). Its value says what it is; it is no secret.
 */
export const SCOPE_MARKER_KEY = "created-by-metamcp-databricks";

/** 48 random bytes from the CSPRNG, base64url: far above better-auth's 32-character minimum. */
export function generateAuthSecret(): string {
  const value = randomBytes(48).toString("base64url");
  registerSecret(value);
  return value;
}

async function listKeys(ws: Workspace, scope: string): Promise<string[] | undefined> {
  const keys: string[] = [];
  try {
    for await (const s of ws.client.secrets.listSecrets({ scope })) if (s.key) keys.push(s.key);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw apiFailure(`listing secret scope ${scope}`, err);
  }
  return keys;
}

function alreadyExists(err: unknown): boolean {
  return (
    err instanceof ApiError &&
    (err.errorCode === "RESOURCE_ALREADY_EXISTS" ||
      err.statusCode === 409 ||
      /already exists/i.test(err.message))
  );
}

/**
 * `databricks secrets put-secret <scope> <key>` with the value on stdin: never on a command line, where
 * every process of the machine could read it (/proc/<pid>/cmdline).
 */
async function putSecret(cli: DatabricksCli, scope: string, key: string, value: string): Promise<void> {
  await cli.run(["secrets", "put-secret", scope, key], { input: value });
}

/**
 * Makes sure the scope and BETTER_AUTH_SECRET in it exist BEFORE `bundle deploy`: the app's secret
 * resource points at this key, and the platform creates and starts the app inside `bundle deploy`.
 * The scope is created when missing (marked as ours); the key is generated once when absent and never
 * overwritten (sessions and encrypted data depend on it), never printed, and written by the CLI's
 * `secrets put-secret` from stdin.
 */
export async function ensureAuthSecret(
  ws: Workspace,
  cli: DatabricksCli,
  scope: string,
  key: string,
): Promise<AuthSecretResult> {
  let keys = await listKeys(ws, scope);
  let scopeCreated = false;
  if (keys === undefined) {
    try {
      await ws.client.secrets.createScope({ scope, scope_backend_type: "DATABRICKS" });
      scopeCreated = true;
    } catch (err) {
      // Another run made it meanwhile: use it as it is.
      if (!alreadyExists(err))
        throw apiFailure(
          `creating secret scope ${scope}`,
          err,
          "the profile's user needs permission to create secret scopes, or create the scope yourself and set SECRET_SCOPE",
        );
    }
    if (scopeCreated)
      await putSecret(
        cli,
        scope,
        SCOPE_MARKER_KEY,
        "this scope was created by metamcp-databricks bundle-deploy; dev destroy deletes it",
      );
    keys = (await listKeys(ws, scope)) ?? [];
  }
  if (keys.includes(key)) return { secret: "kept", scopeCreated };
  await putSecret(cli, scope, key, generateAuthSecret());
  return { secret: "created", scopeCreated };
}

/** True when the key is in the scope (app-deploy checks before deploying an app that would not start). */
export async function authSecretExists(ws: Workspace, scope: string, key: string): Promise<boolean> {
  return (await listKeys(ws, scope))?.includes(key) ?? false;
}

export type ScopeRemoval = "deleted" | "absent" | "kept-not-ours";

/**
 * dev destroy: deletes the scope only when we created it (it holds our marker); a scope the user made
 * is left as it is, with the key we may have added.
 */
export async function deleteOurSecretScope(ws: Workspace, scope: string): Promise<ScopeRemoval> {
  const keys = await listKeys(ws, scope);
  if (keys === undefined) return "absent";
  if (!keys.includes(SCOPE_MARKER_KEY)) return "kept-not-ours";
  try {
    await ws.client.secrets.deleteScope({ scope });
  } catch (err) {
    if (isNotFound(err)) return "absent";
    throw apiFailure(`deleting secret scope ${scope}`, err);
  }
  return "deleted";
}

export function secretMissing(scope: string, key: string, target: string): DatabricksError {
  return new DatabricksError(
    "secret_missing",
    `${scope}/${key} (BETTER_AUTH_SECRET) is missing: the app would refuse to start`,
    `run \`make bundle-deploy TARGET=${target}\` (it generates the secret once)`,
  );
}
