import { existsSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import type { Target } from "../config/variables.js";
import { appPublicUrl } from "../databricks/apps.js";
import { connectWorkspace, normalizeAppUrl } from "../databricks/workspace.js";
import { EXIT, UserError } from "../errors.js";
import { DEFAULT_LOCAL_USER } from "../local/platform/users.js";
import { localPaths, readRunState } from "../local/state.js";
import { mintLocalToken } from "./local-token.js";
import { databricksProfileTokens, mintingTokens, type TokenSource } from "./token-source.js";

/** What `connect` connects to: an app on a Databricks target, or the local rehearsal. */
export type ConnectTarget =
  | { kind: "databricks"; target: Target; profile: string; databricksCli: string; appName: string }
  /** `user`: the local user whose tokens are minted (`--user`; default: the stand-in's default user). */
  | { kind: "local"; stateDir: string; user?: string };

export function targetLabel(t: ConnectTarget): string {
  return t.kind === "local" ? "local" : t.target;
}

/** MetaMCP's own rule for endpoint names (they become a URL segment). */
export function checkEndpointName(name: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(name)) {
    throw new UserError(
      "bad_endpoint_name",
      `"${name}" is not a MetaMCP endpoint name (letters, digits, - and _ only)`,
      EXIT.input,
      "use the name shown on MetaMCP's Endpoints page",
    );
  }
  return name;
}

/** The endpoint's streamable HTTP URL, as upstream routes it: `/metamcp/<endpoint>/mcp`. */
export function endpointUrl(appUrl: string, endpoint: string): string {
  return `${normalizeAppUrl(appUrl)}/metamcp/${checkEndpointName(endpoint)}/mcp`;
}

/** The app's public URL: the Apps API for a target, the running stand-in's proxy for `local`. */
export async function resolveAppUrl(t: ConnectTarget): Promise<string> {
  if (t.kind === "local") {
    const paths = localPaths(t.stateDir);
    const state = readRunState(paths);
    if (state?.status !== "healthy") {
      throw new UserError(
        "local_not_running",
        `the local app is not running (state dir ${t.stateDir}${existsSync(t.stateDir) ? "" : ", which does not exist"})`,
        EXIT.notRunning,
        "start it with `make local` (or `make local ARGS=--detach`) in the project folder",
      );
    }
    return state.appUrl;
  }
  return appPublicUrl(await connectWorkspace(t), t.appName, t.target);
}

export async function tokenSourceFor(t: ConnectTarget): Promise<TokenSource> {
  if (t.kind === "databricks") return databricksProfileTokens(t);
  const stateDir = path.resolve(t.stateDir);
  const user = t.user;
  return mintingTokens(`the local stand-in (${stateDir})`, () => mintLocalToken(stateDir, user));
}

/** Whose token a target's calls carry, when we know it (a local user; a profile's user is not looked up). */
export function tokenUserLabel(t: ConnectTarget): string | undefined {
  if (t.kind !== "local") return undefined;
  return t.user ?? `${DEFAULT_LOCAL_USER.email} (the local default user)`;
}

/** The Databricks CLI's absolute path: clients started outside a shell (Claude Desktop) have no PATH. */
export async function databricksCliPath(bin: string): Promise<string | undefined> {
  if (path.isAbsolute(bin)) return bin;
  const r = await execa("sh", ["-c", `command -v ${JSON.stringify(bin)}`], { reject: false });
  const found = String(r.stdout ?? "").trim();
  return r.exitCode === 0 && path.isAbsolute(found) ? found : undefined;
}
