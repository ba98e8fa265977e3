import { ApiError } from "@databricks/sdk-experimental";
import type { Config } from "../config/load.js";
import { apiFailure, isNotFound, type Workspace } from "./workspace.js";

/**
 * Lakebase checks before a deploy, as the deploying user. The JS SDK has no `postgres` service, so these
 * are plain REST calls through its authenticated client (paths from the Postgres API reference and the
 * CLI's recorded requests).
 */
export interface LakebaseCheck {
  ok: boolean;
  detail: string;
  fix?: string;
  /** The failure is the workspace's, not the config's (bundle-deploy's preflight exits 4 for it). */
  databricksSide?: boolean;
}

/**
 * Answers of a workspace that does not serve the Postgres (Autoscaling) API. Which one a workspace sends is
 * not documented; the CLI's own `databricks psql` (cmd/psql/psql.go, listAllDatabases) tolerates a failing
 * ListProjects "because a workspace may have only one of the two products enabled". We take the platform's
 * answers for an API or feature it does not offer.
 */
const NOT_OFFERED = new Set(["ENDPOINT_NOT_FOUND", "FEATURE_DISABLED", "NOT_IMPLEMENTED"]);

/**
 * Lakebase Autoscaling offered in this workspace? One read call, the one `databricks psql` and
 * `databricks postgres list-projects` make: `GET /api/2.0/postgres/projects`. Availability is per cloud
 * and region (docs: the "Lakebase Autoscaling is available in the following regions" note on every
 * Lakebase Autoscaling page; the CLI's cloud tests, acceptance/bundle/resources/postgres_branches/test.toml:
 * "only available in AWS as of January 2026").
 */
export async function checkAutoscalingOffered(ws: Workspace): Promise<LakebaseCheck | undefined> {
  try {
    await get(ws, "/api/2.0/postgres/projects", { page_size: "1" });
    return undefined;
  } catch (err) {
    const notOffered =
      err instanceof ApiError &&
      (NOT_OFFERED.has(err.errorCode ?? "") ||
        (err.statusCode === 404 && !err.errorCode) ||
        err.statusCode === 501);
    if (!notOffered) throw apiFailure("listing Lakebase Autoscaling projects", err);
    const e = err as ApiError;
    return {
      ok: false,
      databricksSide: true,
      detail: `Lakebase Autoscaling is not offered in this workspace (GET /api/2.0/postgres/projects answered HTTP ${e.statusCode}${e.errorCode ? ` ${e.errorCode}` : ""}): it is available in some clouds and regions only`,
      fix: 'deploy to a workspace in a region that offers Lakebase Autoscaling (docs: "Lakebase Autoscaling is available in the following regions"), or attach an existing provisioned (legacy) instance: LAKEBASE_KIND=provisioned LAKEBASE_INSTANCE_NAME=<instance> (new provisioned instances cannot be created)',
    };
  }
}

async function get<T>(ws: Workspace, path: string, query?: Record<string, string>): Promise<T> {
  return (await ws.client.apiClient.request({
    path,
    method: "GET",
    ...(query ? { query } : {}),
    headers: new Headers(),
    raw: false,
  })) as T;
}

function isForbidden(err: unknown): boolean {
  return err instanceof ApiError && (err.statusCode === 403 || err.errorCode === "PERMISSION_DENIED");
}

interface PostgresDatabase {
  name?: string;
  database_id?: string;
  status?: { postgres_database?: string; database_id?: string };
}

/** Every database of a branch: `GET /api/2.0/postgres/projects/P/branches/B/databases`. */
export async function listBranchDatabases(ws: Workspace, branch: string): Promise<PostgresDatabase[]> {
  const all: PostgresDatabase[] = [];
  let token: string | undefined;
  do {
    const page = await get<{ databases?: PostgresDatabase[]; next_page_token?: string }>(
      ws,
      `/api/2.0/postgres/${branch}/databases${token ? `?page_token=${encodeURIComponent(token)}` : ""}`,
    );
    all.push(...(page.databases ?? []));
    token = page.next_page_token || undefined;
  } while (token);
  return all;
}

function idOf(d: PostgresDatabase): string | undefined {
  return d.database_id ?? d.status?.database_id ?? d.name?.split("/").pop();
}

/**
 * What the Lakebase side needs before `bundle deploy`:
 * - autoscaling, created by the bundle: nothing exists yet (the bundle declares project, role, database);
 * - autoscaling, attached: the project exists, the user may MANAGE it (the app resource grants the app's
 *   service principal access on it), and the database path we render names a database that exists:
 *   when the id is wrong but a database has that PostgreSQL name, it says which id to set;
 * - provisioned (legacy): the instance exists; attached only, and said to be legacy.
 */
export async function checkLakebase(ws: Workspace, config: Config): Promise<LakebaseCheck> {
  const lb = config.lakebase;
  if (lb.kind === "provisioned") {
    try {
      const inst = await get<{ state?: string }>(
        ws,
        `/api/2.0/database/instances/${encodeURIComponent(lb.instanceName)}`,
      );
      return {
        ok: true,
        detail: `provisioned instance ${lb.instanceName} (${inst.state ?? "state unknown"}), attached; provisioned is legacy (no new instances since 2026-03-12, upgraded to autoscaling from 2026-06)`,
      };
    } catch (err) {
      if (isNotFound(err))
        return {
          ok: false,
          detail: `Lakebase instance ${lb.instanceName} does not exist: provisioned instances are attached, never created (legacy)`,
          fix: "set LAKEBASE_INSTANCE_NAME to an existing instance, or use LAKEBASE_KIND=autoscaling (the default)",
        };
      throw apiFailure(`reading Lakebase instance ${lb.instanceName}`, err);
    }
  }
  const offered = await checkAutoscalingOffered(ws);
  if (offered) return offered;
  const project = `projects/${lb.project}`;
  const branch = `${project}/branches/${lb.branch}`;
  if (lb.create) {
    return {
      ok: true,
      detail: `the bundle creates ${project} with database ${branch}/databases/${lb.databaseId} (PostgreSQL ${lb.database})`,
    };
  }
  try {
    await get(ws, `/api/2.0/postgres/${project}`);
  } catch (err) {
    if (isNotFound(err))
      return {
        ok: false,
        detail: `Lakebase project ${lb.project} does not exist (LAKEBASE_CREATE=false attaches an existing one)`,
        fix: "set LAKEBASE_PROJECT to an existing project, or LAKEBASE_CREATE=true to let the bundle create it",
      };
    throw apiFailure(`reading Lakebase project ${lb.project}`, err);
  }
  try {
    // Reading a project's access control list takes CAN MANAGE on it.
    await get(ws, `/api/2.0/permissions/database-projects/${encodeURIComponent(lb.project)}`);
  } catch (err) {
    if (isForbidden(err))
      return {
        ok: false,
        detail: `you lack CAN MANAGE on Lakebase project ${lb.project}: attaching it to the app grants the app's service principal access, which needs it`,
        fix: `ask the project's owner for CAN MANAGE on ${lb.project} (Lakebase → project → Permissions)`,
      };
    throw apiFailure(`reading the permissions of Lakebase project ${lb.project}`, err);
  }
  let databases: PostgresDatabase[];
  try {
    databases = await listBranchDatabases(ws, branch);
  } catch (err) {
    if (isNotFound(err))
      return {
        ok: false,
        detail: `branch ${branch} does not exist`,
        fix: "set LAKEBASE_BRANCH to an existing branch of the project",
      };
    throw apiFailure(`listing the databases of ${branch}`, err);
  }
  if (databases.some((d) => idOf(d) === lb.databaseId))
    return {
      ok: true,
      detail: `attaching ${branch}/databases/${lb.databaseId} (project not managed by the bundle)`,
    };
  const byName = databases.find((d) => d.status?.postgres_database === lb.database);
  if (byName && idOf(byName))
    return {
      ok: false,
      detail: `${branch} has no database with id ${lb.databaseId}; PostgreSQL database ${lb.database} has id ${idOf(byName)}`,
      fix: `set LAKEBASE_DATABASE_ID=${idOf(byName)} (the path names the id, not the PostgreSQL name)`,
    };
  return {
    ok: false,
    detail: `${branch} has no database ${lb.database} (id ${lb.databaseId}); it has: ${databases.map((d) => `${idOf(d)} (${d.status?.postgres_database ?? "?"})`).join(", ") || "none"}`,
    fix: "set LAKEBASE_DATABASE (and LAKEBASE_DATABASE_ID) to one of those, or create the database first",
  };
}
