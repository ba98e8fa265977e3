import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ApiError, Config as SdkConfig, WorkspaceClient } from "@databricks/sdk-experimental";
import type { Config } from "../config/load.js";
import { DatabricksError, EXIT, UserError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";

/**
 * The workspace REST API through the official JS SDK: it reads the CLI profile (~/.databrickscfg),
 * and authenticates as the profile says: OAuth M2M for client-id/secret profiles, `databricks auth
 * token --profile P` for browser-login profiles, or a PAT.
 */
export interface Workspace {
  client: WorkspaceClient;
  host: string;
  profile: string;
  authType: string;
}

const UNREACHABLE = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|fetch failed/i;
const UNREACHABLE_HINT =
  "the workspace did not answer: check the profile's host and your network (`make doctor` checks both)";

export function loginHint(profile: string): string {
  return `run \`databricks auth login --profile ${profile}\` (or fix the profile in ~/.databrickscfg)`;
}

/** Resolves the profile and authenticates once, so a bad login fails here with what to do. */
export async function connectWorkspace(
  config: Pick<Config, "profile" | "databricksCli">,
): Promise<Workspace> {
  const sdkConfig = new SdkConfig({ profile: config.profile, databricksCliPath: config.databricksCli });
  try {
    await sdkConfig.ensureResolved();
    const headers = new Headers();
    await sdkConfig.authenticate(headers);
    const bearer = /^Bearer\s+(\S+)/i.exec(headers.get("authorization") ?? "")?.[1];
    registerSecret(bearer);
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    // With no config file at all the SDK only says it found no credentials: name the real cause.
    const configFile = process.env.DATABRICKS_CONFIG_FILE ?? path.join(os.homedir(), ".databrickscfg");
    if (!existsSync(configFile) && /cannot configure default credentials/i.test(message)) {
      throw new UserError(
        "profile_missing",
        `Databricks profile ${config.profile} is not configured: ${configFile} does not exist`,
        EXIT.input,
        `run \`databricks auth login --host <workspace-url> --profile ${config.profile}\``,
      );
    }
    if (/cannot find .*profile|has no .* profile|resolve: .*profile/i.test(message)) {
      throw new UserError(
        "profile_missing",
        `Databricks profile ${config.profile} is not configured: ${firstLine(message)}`,
        EXIT.input,
        `run \`databricks auth login --host <workspace-url> --profile ${config.profile}\``,
      );
    }
    if (UNREACHABLE.test(message) || UNREACHABLE.test(String((err as { cause?: unknown }).cause ?? ""))) {
      throw new DatabricksError(
        "workspace_unreachable",
        `cannot reach the workspace of profile ${config.profile}: ${firstLine(message)}`,
        UNREACHABLE_HINT,
        { cause: err },
      );
    }
    throw new DatabricksError(
      "not_logged_in",
      `cannot authenticate with profile ${config.profile}: ${firstLine(message)}`,
      loginHint(config.profile),
      { cause: err },
    );
  }
  const client = new WorkspaceClient(sdkConfig);
  return {
    client,
    host: sdkConfig.host ?? "",
    profile: config.profile,
    authType: sdkConfig.authType ?? "unknown",
  };
}

/**
 * Profile auth types whose tokens the Apps proxy refuses, though the REST API (and so `bundle deploy`)
 * takes them: personal access tokens, and on Azure the Entra ID ones (learn.microsoft.com, Azure Databricks:
 * databricks-apps/connect-local: calling an app needs a Databricks workspace OAuth token, U2M or M2M).
 * The names are the SDK's `auth_type` values.
 */
export const APPS_PROXY_REFUSED_AUTH: Record<string, string> = {
  pat: "a personal access token",
  "azure-cli": "an Azure CLI (Entra ID) login",
  "azure-client-secret": "an Entra ID service principal secret",
  "azure-msi": "an Azure managed identity (Entra ID)",
};

/**
 * The refusal for an auth type the Apps proxy does not accept (undefined when it does): the deploy would
 * succeed, then app-health, app-logs and connect fail. The fix is a workspace OAuth login.
 */
export function appsProxyAuthRefusal(
  profile: string,
  host: string | undefined,
  authType: string | undefined,
): UserError | undefined {
  const what = authType ? APPS_PROXY_REFUSED_AUTH[authType] : undefined;
  if (!what) return undefined;
  return new UserError(
    authType === "pat" ? "pat_not_accepted" : "entra_auth_not_accepted",
    `profile ${profile} authenticates with ${what}, which the Apps proxy does not accept (auth_type ${authType}): the deploy would succeed, then app-health, app-logs and connect fail`,
    EXIT.input,
    `log in with workspace OAuth: \`databricks auth login --host ${host || "<workspace-url>"} --profile ${profile}\`, or use a client-id/secret (OAuth M2M) profile of a Databricks service principal`,
  );
}

/**
 * The auth type a profile declares, read from ~/.databrickscfg without signing in (so an Entra profile is
 * refused before the SDK asks Entra for a token): `auth_type`, else what its fields imply, as the SDK picks.
 */
export async function declaredAuthType(
  config: Pick<Config, "profile" | "databricksCli">,
): Promise<{ authType?: string; host?: string }> {
  const sdkConfig = new SdkConfig({ profile: config.profile, databricksCliPath: config.databricksCli });
  try {
    await sdkConfig.ensureResolved();
  } catch {
    // connectWorkspace reports a profile that does not resolve, with what to do.
    return {};
  }
  const authType =
    sdkConfig.authType ??
    (sdkConfig.token
      ? "pat"
      : sdkConfig.azureClientSecret
        ? "azure-client-secret"
        : sdkConfig.azureUseMsi
          ? "azure-msi"
          : undefined);
  return { authType, host: sdkConfig.host };
}

/**
 * An OAuth access token for the Apps proxy. PATs and Entra ID tokens are refused there, so such a profile
 * fails with what to do instead.
 */
export async function oauthToken(ws: Workspace): Promise<string> {
  const refusal = appsProxyAuthRefusal(ws.profile, ws.host, ws.authType);
  if (refusal) throw refusal;
  const headers = new Headers();
  await ws.client.config.authenticate(headers);
  const token = /^Bearer\s+(\S+)/i.exec(headers.get("authorization") ?? "")?.[1];
  if (!token) throw new DatabricksError("no_oauth_token", `profile ${ws.profile} gave no OAuth bearer token`);
  registerSecret(token);
  return token;
}

function firstLine(s: string): string {
  return (s.split("\n")[0] ?? s).replace(/\. Config: .*$/, "");
}

/** A REST failure as a DatabricksError that names the call and keeps the platform's message. */
export function apiFailure(what: string, err: unknown, hint?: string): DatabricksError {
  if (err instanceof ApiError) {
    return new DatabricksError(
      err.errorCode ? err.errorCode.toLowerCase() : "api_error",
      `${what} failed: ${err.message} (HTTP ${err.statusCode}${err.errorCode ? ` ${err.errorCode}` : ""})`,
      hint,
      { cause: err },
    );
  }
  if (err instanceof UserError) return err as DatabricksError;
  const message = (err as Error).message ?? String(err);
  const unreachable = UNREACHABLE.test(message);
  return new DatabricksError(
    unreachable ? "workspace_unreachable" : "api_error",
    `${what} failed: ${message}`,
    hint ?? (unreachable ? UNREACHABLE_HINT : undefined),
    { cause: err },
  );
}

export function isNotFound(err: unknown): boolean {
  return (
    err instanceof ApiError &&
    (err.statusCode === 404 || err.errorCode === "RESOURCE_DOES_NOT_EXIST" || err.errorCode === "NOT_FOUND")
  );
}

/** `https://` added when the API returns a bare host; no trailing slash. */
export function normalizeAppUrl(url: string): string {
  const withScheme = /^https?:\/\//i.test(url) ? url : `https://${url}`;
  return withScheme.replace(/\/+$/, "");
}
