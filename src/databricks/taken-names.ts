import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ApiError } from "@databricks/sdk-experimental";
import type { Config } from "../config/load.js";
import { bundleSummaryJson } from "./bundle.js";
import type { DatabricksCli } from "./cli.js";
import { BUNDLE_KEYS, type RenderedBundle } from "./render.js";
import { SCOPE_MARKER_KEY } from "./secrets.js";
import { apiFailure, isNotFound, type Workspace } from "./workspace.js";

/**
 * App names, Lakebase project ids and secret scopes are unique per workspace, and creating a taken one
 * fails for good half-way through `bundle deploy`. So before anything changes we look each name up and
 * decide whether it is ours from what the platform shows:
 * - app and Lakebase project: ours when this bundle's deployment state for the target holds them, as
 *   `databricks bundle summary -o json` shows it (a deployed resource has an `id`, an undeployed one
 *   `modified_status: created`: the CLI's acceptance case bundle/summary/modified_status; the summary
 *   pulls the state from the workspace, cmd/bundle/summary.go → utils.ProcessBundle ReadState);
 * - secret scope (made by bundle-deploy through the API, not a bundle resource; scopes carry no tags): ours
 *   when it holds our marker key, or when SECRET_SCOPE names it explicitly (the user adopts it).
 */
export interface TakenCheck {
  ok: boolean;
  detail: string;
  fix?: string;
}

export interface BundleState {
  app: boolean;
  project: boolean;
}

interface SummaryResource {
  id?: string;
  modified_status?: string;
}

function deployed(r: SummaryResource | undefined): boolean {
  return Boolean(r?.id) && r?.modified_status !== "created";
}

/** What a `bundle summary -o json` shows of our two named resources. */
export function bundleStateOf(summary: {
  resources?: Record<string, Record<string, SummaryResource> | undefined>;
}): BundleState {
  return {
    app: deployed(summary.resources?.apps?.[BUNDLE_KEYS.app]),
    project: deployed(summary.resources?.postgres_projects?.[BUNDLE_KEYS.project]),
  };
}

/**
 * What this target's bundle deployment state holds, through `bundle summary` of the bundle as it will be
 * deployed, written to a scratch folder (doctor changes nothing in the project).
 */
export async function readBundleState(
  cli: DatabricksCli,
  rendered: RenderedBundle,
  target: string,
): Promise<BundleState> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mmdb-summary-"));
  try {
    writeFileSync(path.join(dir, "databricks.yml"), rendered.databricksYml);
    return bundleStateOf(await bundleSummaryJson(cli, dir, target, rendered.variables));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function get<T>(ws: Workspace, p: string): Promise<T | undefined> {
  try {
    return (await ws.client.apiClient.request({
      path: p,
      method: "GET",
      headers: new Headers(),
      raw: false,
    })) as T;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function isForbidden(err: unknown): boolean {
  return err instanceof ApiError && (err.statusCode === 403 || err.errorCode === "PERMISSION_DENIED");
}

const EXPLICIT = new Set(["flag", "env", "dotenv"]);

/** Taken names, one problem each with what to do; ok when every name is free or ours. */
export async function checkTakenNames(
  ws: Workspace,
  config: Config,
  state: BundleState,
  bundleDir: string,
): Promise<TakenCheck> {
  const problems: { detail: string; fix: string }[] = [];
  const notes: string[] = [];
  const t = config.target;
  const bind = (key: string, id: string) =>
    `\`databricks bundle deployment bind ${key} ${id} --target ${t} --profile ${config.profile}\` (from ${bundleDir}; bundle-deploy then manages it, and destroy deletes it)`;

  let app: { creator?: string } | undefined;
  try {
    app = await get<{ creator?: string }>(ws, `/api/2.0/apps/${encodeURIComponent(config.appName)}`);
  } catch (err) {
    if (!isForbidden(err)) throw apiFailure(`reading app ${config.appName}`, err);
    app = {};
  }
  if (app && !state.app)
    problems.push({
      detail: `app ${config.appName} already exists${app.creator ? ` (created by ${app.creator})` : " (you may not read it)"} and is not in this bundle's deployment state for target ${t}`,
      fix: `choose another name (APP_BASE_NAME, or APP_NAME), or adopt the app: ${bind(BUNDLE_KEYS.app, config.appName)}`,
    });
  else notes.push(app ? `app ${config.appName} (ours)` : `app ${config.appName} (free)`);

  const lb = config.lakebase;
  if (lb.kind === "autoscaling" && lb.create) {
    let project: unknown;
    try {
      project = await get(ws, `/api/2.0/postgres/projects/${encodeURIComponent(lb.project)}`);
    } catch (err) {
      if (!isForbidden(err)) throw apiFailure(`reading Lakebase project ${lb.project}`, err);
      project = {};
    }
    if (project && !state.project)
      problems.push({
        detail: `Lakebase project ${lb.project} already exists and is not in this bundle's deployment state for target ${t}`,
        fix: `choose another LAKEBASE_PROJECT (or APP_BASE_NAME); or use it as it is: LAKEBASE_CREATE=false LAKEBASE_PROJECT=${lb.project}; or adopt it: ${bind(BUNDLE_KEYS.project, lb.project)}`,
      });
    else notes.push(`project ${lb.project} (${project ? "ours" : "free"})`);
  }

  const { scope } = config.secret;
  let keys: string[] | undefined;
  let forbidden = false;
  try {
    keys = [];
    for await (const s of ws.client.secrets.listSecrets({ scope })) if (s.key) keys.push(s.key);
  } catch (err) {
    if (isNotFound(err)) keys = undefined;
    else if (isForbidden(err)) forbidden = true;
    else throw apiFailure(`listing secret scope ${scope}`, err);
  }
  const adopted = EXPLICIT.has(config.values.SECRET_SCOPE?.source ?? "");
  if (forbidden)
    problems.push({
      detail: `secret scope ${scope} already exists and you may not read it`,
      fix: `set SECRET_SCOPE to another scope (or choose another APP_BASE_NAME), or ask the scope's owner for MANAGE on ${scope}`,
    });
  else if (keys && !keys.includes(SCOPE_MARKER_KEY) && !adopted)
    problems.push({
      detail: `secret scope ${scope} already exists and was not created by bundle-deploy`,
      fix: `choose another APP_BASE_NAME (or SECRET_SCOPE); or adopt it: set SECRET_SCOPE=${scope} (bundle-deploy then adds only its key, and destroy never deletes the scope)`,
    });
  else notes.push(`secret scope ${scope} (${keys ? (adopted ? "yours, used as it is" : "ours") : "free"})`);

  if (problems.length === 0) return { ok: true, detail: `free or ours: ${notes.join(", ")}` };
  return {
    ok: false,
    detail: problems.map((p) => p.detail).join("; "),
    // One arrow line per problem under the check (formatChecks prints the first arrow).
    fix: problems.map((p) => p.fix).join("\n  → "),
  };
}
