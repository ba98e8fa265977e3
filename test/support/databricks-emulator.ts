import { randomBytes, randomUUID } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { connect } from "node:net";
import os from "node:os";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { type AppProcess, spawnAppProcess } from "../../src/local/app-process.js";
import {
  type AppsProxy,
  DEFAULT_PROXY_LIMITS,
  LogBuffer,
  registerAppsProxy,
} from "../../src/local/platform/apps-proxy.js";
import { registerOidc, registerOidcDiscovery, requireBearer } from "../../src/local/platform/oidc.js";
import { ApiError, PlatformServer } from "../../src/local/platform/server.js";
import { TokenStore } from "../../src/local/platform/tokens.js";
import { AuthCodes, BrowserSessions, LocalUsers } from "../../src/local/platform/users.js";
import {
  type EmbeddedPostgresHandle,
  provisionLakebaseRole,
  setRolePassword,
} from "../../src/local/postgres.js";

/**
 * A Databricks workspace on 127.0.0.1 for tests, following the official REST shapes and refusing what the
 * platform refuses (our fixtures, described from the Databricks CLI's recorded cases and the docs, in
 * test/databricks/fixtures/platform-cases.md): OIDC, Apps (create, get, update, start, stop, deploy,
 * deployments, delete), secrets, workspace files, Lakebase Autoscaling (projects, roles, databases,
 * credentials) and provisioned instances, SCIM Me; and one app's host behind the Apps proxy (bearer
 * token required, 302 to login without one, `/logz/stream`).
 *
 * Strict like the platform:
 * - an app is refused when a secret resource names a key that does not exist, or a postgres resource
 *   names a branch or database path that does not exist;
 * - a database id must match `^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$` (400), and needs its owner `role`;
 * - an app's own service principal may not read the app (`GET /api/2.0/apps/{name}` → 403) unless
 *   `spMayReadOwnApp` is set;
 * - with a `runner`, a deployment really runs the snapshot of the synced tree: `app.yaml`'s command, with
 *   exactly the environment the platform gives (its variables, app.yaml's `value`s, `valueFrom` resolved
 *   from the app's resources, PG* for a database resource), against embedded PostgreSQL.
 */
export interface EmulatedDeployment {
  deployment_id: string;
  source_code_path: string;
  mode: string;
  status: { state: string; message: string };
  create_time: string;
  /** States still to go through, one per GET (scripted deployments). */
  pending: { state: string; message: string }[];
}

export interface AppResource {
  name: string;
  secret?: { scope: string; key: string; permission?: string };
  postgres?: { branch: string; database: string; permission?: string };
  database?: { instance_name: string; database_name: string; permission?: string };
}

export interface EmulatedApp {
  name: string;
  description?: string;
  resources: AppResource[];
  computeState: string;
  appState: string;
  deployments: EmulatedDeployment[];
  activeId?: string;
  /** How many GETs a STARTING compute takes to become ACTIVE. */
  startPolls: number;
  /** Refuses deploys as "in progress" with nothing pending, as the platform does after a failure. */
  settling?: boolean;
  /** The app's service principal (its client id is PGUSER too). */
  sp: { clientId: string; clientSecret: string };
  computeSize?: string;
  /** The app's `budget_policy_id` (Apps API: App.budget_policy_id), set on create or update. */
  budgetPolicyId?: string;
  /** Who created it (the Apps API's `creator`). */
  creator?: string;
  /** `PUT /api/2.0/permissions/apps/{name}`'s access_control_list, as set. */
  acl: AclEntry[];
}

/** One entry of a permissions access_control_list (Permissions API). */
export interface AclEntry {
  user_name?: string;
  group_name?: string;
  service_principal_name?: string;
  permission_level: string;
}

export interface DeploymentScript {
  /** The final state after the IN_PROGRESS polls. */
  final: "SUCCEEDED" | "FAILED" | "CANCELLED";
  message?: string;
  inProgressPolls?: number;
  /** Lines the app "writes" while this deployment runs (they reach /logz/stream). */
  logLines?: string[];
}

export interface PostgresDatabaseState {
  databaseId: string;
  postgresDatabase: string;
  role: string;
}

export interface PostgresBranchState {
  roles: Map<string, { postgresRole: string }>;
  databases: Map<string, PostgresDatabaseState>;
  endpoints: Set<string>;
}

export interface PostgresProjectState {
  projectId: string;
  displayName?: string;
  branches: Map<string, PostgresBranchState>;
}

/** Runs deployed app trees for real (see the class comment). */
export interface AppRunner {
  /** The port the app must listen on (DATABRICKS_APP_PORT); the Apps proxy forwards there. */
  appPort: number;
  postgres: EmbeddedPostgresHandle;
  /** Lakebase credential lifetime (seconds). */
  credentialTtlSeconds?: number;
  /** How long a deployment may take to listen on the port. */
  startTimeoutMs?: number;
  /** How long the app must keep running after it listens for its deployment to succeed. */
  settleMs?: number;
}

/** The recorded API message for a bad database id (400 INVALID_PARAMETER_VALUE). */
export const DATABASE_ID_PATTERN = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The workspace id the platform injects as DATABRICKS_WORKSPACE_ID. */
export const WORKSPACE_ID = "1234567890123456";

export class DatabricksEmulator {
  readonly tokens = new TokenStore();
  readonly workspace = new PlatformServer();
  readonly appHost: PlatformServer;
  readonly logs = new LogBuffer();
  readonly apps = new Map<string, EmulatedApp>();
  readonly secrets = new Map<string, Map<string, string>>();
  readonly workspaceDirs = new Set<string>();
  readonly clients = new Map<string, string>();
  readonly projects = new Map<string, PostgresProjectState>();
  /** Projects deleted, with whether the delete purged them (`?purge=true`) or only soft-deleted them. */
  readonly deletedProjects: { projectId: string; purged: boolean }[] = [];
  /** Provisioned (legacy) instances that exist; new ones cannot be created. */
  readonly instances = new Set<string>();
  /** Projects whose permissions the user may not read (no CAN MANAGE). */
  readonly unmanageableProjects = new Set<string>();
  /** Where workspace files live (`/Workspace/...` maps below it). */
  readonly fsRoot: string;
  readonly userName = "someone@example.com";
  /**
   * Other people of this workspace, by the subject of their token (an M2M client id or a user): SCIM Me
   * answers with theirs. Anyone else is {@link userName}.
   */
  readonly users = new Map<string, { userName: string; displayName?: string }>();
  /** false: `GET /api/2.0/postgres/projects` answers as a workspace without Lakebase Autoscaling. */
  autoscalingAvailable = true;
  /** What the next deployment does (without a runner). */
  nextDeployment: DeploymentScript = { final: "SUCCEEDED", message: "App started successfully" };
  /** false: the Apps proxy refuses every token (sends the browser to log in). */
  proxyAcceptsTokens = true;
  /** The Apps proxy's cuts (Databricks: 120 s a request, ~300 s a stream); tests shorten them. */
  readonly proxyLimits = { ...DEFAULT_PROXY_LIMITS };
  /** Real workspaces may forbid an app's service principal to read its own app: the default here. */
  spMayReadOwnApp = false;
  private proxy: AppsProxy | undefined;
  private readonly appSps = new Map<string, string>();
  private running: { app: string; process: AppProcess; deploymentId: string } | undefined;

  /**
   * `appTls`: the app's host serves HTTPS and the Apps API gives its URL without a scheme, as the real
   * API may (`<name>-<id>.<region>.databricksapps.com`).
   */
  constructor(
    private readonly appTarget: string,
    appTls?: { key: string; cert: string },
    readonly runner?: AppRunner,
  ) {
    this.appHost = new PlatformServer({ tls: appTls });
    this.fsRoot = mkdtempSync(path.join(os.tmpdir(), "mmdb-ws-"));
    registerOidc(this.workspace, { tokens: this.tokens, clients: this.clients });
    registerOidcDiscovery(this.workspace);
    this.registerApps();
    this.registerSecrets();
    this.registerWorkspaceFiles();
    this.registerPostgres();
    this.workspace.route("GET", "/api/2.0/preview/scim/v2/Me", ({ req }) => {
      const who = this.userOf(this.auth(req));
      return { id: "1234", active: true, ...who };
    });
  }

  /** Personal access tokens: the REST API takes them, the Apps proxy does not. */
  readonly pats = new Set<string>();

  /** The caller's subject (a user, an M2M client or an app's service principal). */
  private auth(req: IncomingMessage): string {
    const pat = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (pat && this.pats.has(pat)) return this.userName;
    return requireBearer(this.tokens, req);
  }

  /** The person a token's subject is. */
  userOf(subject: string): { userName: string; displayName?: string } {
    return this.users.get(subject) ?? { userName: this.userName };
  }

  get url(): string {
    return this.workspace.url;
  }

  get appUrl(): string {
    return this.appHost.url;
  }

  /** A user's OAuth token, as `databricks auth token` would hand out. */
  issueUserToken(ttlSeconds = 3600): string {
    return this.tokens.issue(this.userName, ttlSeconds).token;
  }

  /** A workspace path's place on disk. */
  localPath(workspacePath: string): string {
    return path.join(this.fsRoot, workspacePath);
  }

  async start(): Promise<this> {
    await this.workspace.listen(0);
    await this.appHost.listen(0);
    this.proxy = registerAppsProxy(this.appHost, {
      tokens: {
        verifyHeader: (h) => (this.proxyAcceptsTokens ? this.tokens.verifyHeader(h) : undefined),
      },
      target: this.appTarget,
      loginUrl: () => `${this.workspace.url}/login.html`,
      logs: this.logs,
      users: (() => {
        const users = new LocalUsers();
        users.add(this.userName, this.userName);
        return users;
      })(),
      codes: new AuthCodes(),
      sessions: new BrowserSessions(),
      workspaceId: "1234567890123456",
      origins: () => [this.appHost.url],
      limits: () => this.proxyLimits,
    });
    return this;
  }

  openLogStreams(): number {
    return this.proxy?.logSockets().size ?? 0;
  }

  /** Closes every open `/logz/stream` socket (the stream "drops"). */
  dropLogStreams(): number {
    const sockets = this.proxy?.logSockets() ?? new Set();
    const n = sockets.size;
    for (const s of sockets) s.terminate();
    return n;
  }

  /** Takes the app's host off the network (connections refused) until `restartAppHost`. */
  async stopAppHost(): Promise<void> {
    this.dropLogStreams();
    await this.appHost.close();
  }

  /** Puts the app's host back on the same port (its URL does not change). */
  async restartAppHost(): Promise<void> {
    await this.appHost.listen(Number(new URL(this.appHost.url).port));
  }

  /** The app process a runner started, if one runs. */
  get runningApp(): { app: string; pid: number; deploymentId: string } | undefined {
    return this.running
      ? { app: this.running.app, pid: this.running.process.pid, deploymentId: this.running.deploymentId }
      : undefined;
  }

  private async stopRunning(): Promise<void> {
    const r = this.running;
    this.running = undefined;
    // Apps get 15 s after SIGTERM.
    if (r) await r.process.stop(15_000);
  }

  async close(): Promise<void> {
    await this.stopRunning();
    this.proxy?.close();
    await this.appHost.close();
    await this.workspace.close();
    rmSync(this.fsRoot, { recursive: true, force: true });
  }

  private app(name: string): EmulatedApp {
    const app = this.apps.get(name);
    if (!app)
      throw new ApiError(
        404,
        "RESOURCE_DOES_NOT_EXIST",
        `App with name ${name} does not exist or is deleted.`,
      );
    return app;
  }

  private appJson(app: EmulatedApp): Record<string, unknown> {
    const dep = (id: string | undefined) => {
      const d = app.deployments.find((x) => x.deployment_id === id);
      if (!d) return undefined;
      const { pending: _pending, ...shape } = d;
      return shape;
    };
    const pending = app.deployments.find(
      (d) =>
        d.deployment_id !== app.activeId && !["SUCCEEDED", "FAILED", "CANCELLED"].includes(d.status.state),
    );
    return {
      name: app.name,
      ...(app.description ? { description: app.description } : {}),
      // With its scheme: the CLI's `apps logs` refuses a URL without one (cmd/apps/logs.go buildLogsURL).
      url: this.appHost.url,
      resources: app.resources,
      app_status: { state: app.appState, message: `App is ${app.appState.toLowerCase()}.` },
      compute_status: {
        state: app.computeState,
        message: `App compute is ${app.computeState.toLowerCase()}.`,
      },
      service_principal_client_id: app.sp.clientId,
      ...(app.computeSize ? { compute_size: app.computeSize } : {}),
      ...(app.budgetPolicyId ? { budget_policy_id: app.budgetPolicyId } : {}),
      ...(app.creator ? { creator: app.creator } : {}),
      default_source_code_path: app.deployments.at(-1)?.source_code_path,
      ...(app.activeId ? { active_deployment: dep(app.activeId) } : {}),
      ...(pending ? { pending_deployment: dep(pending.deployment_id) } : {}),
    };
  }

  private appAclJson(app: EmulatedApp): Record<string, unknown> {
    return {
      object_id: `/apps/${app.name}`,
      object_type: "apps",
      access_control_list: app.acl.map(({ permission_level, ...who }) => ({
        ...who,
        all_permissions: [{ permission_level, inherited: false }],
      })),
    };
  }

  /** An app as it would exist already (tests of the commands that only read it). */
  addApp(name: string, computeState = "ACTIVE", resources: AppResource[] = []): EmulatedApp {
    const sp = {
      clientId: `sp-${randomBytes(6).toString("hex")}`,
      clientSecret: randomBytes(24).toString("hex"),
    };
    this.clients.set(sp.clientId, sp.clientSecret);
    this.appSps.set(sp.clientId, name);
    const app: EmulatedApp = {
      name,
      resources,
      computeState,
      appState: "UNAVAILABLE",
      deployments: [],
      startPolls: 1,
      sp,
      acl: [],
    };
    this.apps.set(name, app);
    return app;
  }

  /** The postgres branch for `projects/P/branches/B`, or undefined. */
  branch(branchPath: string): PostgresBranchState | undefined {
    const m = /^projects\/([^/]+)\/branches\/([^/]+)$/.exec(branchPath);
    if (!m) return undefined;
    return this.projects.get(m[1]!)?.branches.get(m[2]!);
  }

  /** The database for `projects/P/branches/B/databases/D`, or undefined. */
  database(databasePath: string): PostgresDatabaseState | undefined {
    const m = /^(projects\/[^/]+\/branches\/[^/]+)\/databases\/([^/]+)$/.exec(databasePath);
    if (!m) return undefined;
    return this.branch(m[1]!)?.databases.get(m[2]!);
  }

  /**
   * What the platform checks when an app is created or its resources change: every resource must name
   * something that exists. (The Apps API is reported to refuse an app whose secret key is missing.)
   */
  private checkAppResources(resources: AppResource[]): void {
    for (const r of resources) {
      if (r.secret) {
        const scope = this.secrets.get(r.secret.scope);
        if (!scope)
          throw new ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            `Secret scope ${r.secret.scope} of app resource ${r.name} does not exist.`,
          );
        if (!scope.has(r.secret.key))
          throw new ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            `Secret key ${r.secret.key} in scope ${r.secret.scope} of app resource ${r.name} does not exist.`,
          );
      }
      if (r.postgres) {
        if (!this.branch(r.postgres.branch))
          throw new ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            `Branch ${r.postgres.branch} of app resource ${r.name} does not exist.`,
          );
        if (!this.database(r.postgres.database))
          throw new ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            `Database ${r.postgres.database} of app resource ${r.name} does not exist.`,
          );
      }
      if (r.database && !this.instances.has(r.database.instance_name))
        throw new ApiError(
          400,
          "INVALID_PARAMETER_VALUE",
          `Database instance ${r.database.instance_name} of app resource ${r.name} does not exist.`,
        );
    }
  }

  /** The app's service principal gets CONNECT, CREATE on each database it is given (CAN_CONNECT_AND_CREATE). */
  private async grantDatabases(app: EmulatedApp): Promise<void> {
    if (!this.runner) return;
    for (const r of app.resources) {
      const db = r.postgres ? this.database(r.postgres.database) : undefined;
      if (db)
        await provisionLakebaseRole(this.runner.postgres.adminUrl(), {
          database: db.postgresDatabase,
          role: app.sp.clientId,
        });
    }
  }

  private registerApps(): void {
    const w = this.workspace;
    w.route("POST", "/api/2.0/apps", async ({ req, body, query }) => {
      const who = this.userOf(this.auth(req)).userName;
      const b = (body ?? {}) as {
        name?: string;
        description?: string;
        resources?: AppResource[];
        compute_size?: string;
        budget_policy_id?: string;
      };
      const name = String(b.name);
      if (this.apps.has(name))
        throw new ApiError(409, "RESOURCE_ALREADY_EXISTS", `App ${name} already exists.`);
      const resources = b.resources ?? [];
      this.checkAppResources(resources);
      const noCompute = query.get("no_compute") === "true";
      const app = this.addApp(name, noCompute ? "STOPPED" : "STARTING", resources);
      app.description = b.description;
      app.computeSize = b.compute_size;
      app.budgetPolicyId = b.budget_policy_id;
      app.creator = who;
      await this.grantDatabases(app);
      return this.appJson(app);
    });
    w.route("GET", "/api/2.0/apps/:name", ({ req, params }) => {
      const who = this.auth(req);
      const app = this.app(params.name!);
      if (this.appSps.has(who) && !this.spMayReadOwnApp)
        throw new ApiError(
          403,
          "PERMISSION_DENIED",
          `User ${who} does not have View permissions on App ${app.name}.`,
        );
      if (app.computeState === "STARTING") {
        app.startPolls--;
        if (app.startPolls < 0) app.computeState = "ACTIVE";
      }
      return this.appJson(app);
    });
    w.route("POST", "/api/2.0/apps/:name/update", async ({ req, params, body }) => {
      this.auth(req);
      const app = this.app(params.name!);
      const b =
        (
          (body ?? {}) as {
            app?: {
              description?: string;
              resources?: AppResource[];
              compute_size?: string;
              budget_policy_id?: string;
            };
          }
        ).app ?? {};
      const resources = b.resources ?? [];
      this.checkAppResources(resources);
      app.description = b.description;
      app.computeSize = b.compute_size;
      app.budgetPolicyId = b.budget_policy_id;
      app.resources = resources;
      await this.grantDatabases(app);
      return { status: { state: "SUCCEEDED", message: "App update succeeded" } };
    });
    w.route("DELETE", "/api/2.0/apps/:name", async ({ req, params }) => {
      this.auth(req);
      this.app(params.name!);
      if (this.running?.app === params.name) await this.stopRunning();
      this.apps.delete(params.name!);
      return {};
    });
    // Permissions API for apps: PUT replaces the list (what the CLI's direct engine sends), GET reads it.
    w.route("PUT", "/api/2.0/permissions/apps/:name", ({ req, params, body }) => {
      this.auth(req);
      const app = this.app(params.name!);
      const acl = ((body ?? {}) as { access_control_list?: AclEntry[] }).access_control_list ?? [];
      for (const e of acl)
        if (!["CAN_USE", "CAN_MANAGE"].includes(e.permission_level))
          throw new ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            `Permission level ${e.permission_level} is not supported for apps.`,
          );
      app.acl = acl;
      return this.appAclJson(app);
    });
    w.route("GET", "/api/2.0/permissions/apps/:name", ({ req, params }) => {
      this.auth(req);
      return this.appAclJson(this.app(params.name!));
    });
    w.route("POST", "/api/2.0/apps/:name/start", ({ req, params }) => {
      this.auth(req);
      const app = this.app(params.name!);
      if (app.computeState === "STOPPED") app.computeState = "STARTING";
      return this.appJson(app);
    });
    w.route("POST", "/api/2.0/apps/:name/stop", async ({ req, params }) => {
      this.auth(req);
      const app = this.app(params.name!);
      if (this.running?.app === app.name) await this.stopRunning();
      app.computeState = "STOPPED";
      app.appState = "UNAVAILABLE";
      return this.appJson(app);
    });
    w.route("POST", "/api/2.0/apps/:name/deployments", async ({ req, params, body }) => {
      this.auth(req);
      const app = this.app(params.name!);
      const b = (body ?? {}) as { source_code_path?: string; mode?: string };
      if (app.computeState !== "ACTIVE") {
        throw new ApiError(
          400,
          "INVALID_PARAMETER_VALUE",
          `App compute is ${app.computeState}: start the app before deploying.`,
        );
      }
      const inFlight = app.deployments.some(
        (d) =>
          d.deployment_id !== app.activeId && !["SUCCEEDED", "FAILED", "CANCELLED"].includes(d.status.state),
      );
      if (app.settling || inFlight) {
        throw new ApiError(
          400,
          "INVALID_PARAMETER_VALUE",
          `Cannot deploy app ${app.name} as there is an active deployment in progress.`,
        );
      }
      const source = b.source_code_path ?? "";
      if (!source || !existsSync(this.localPath(source))) {
        throw new ApiError(404, "RESOURCE_DOES_NOT_EXIST", `Path (${b.source_code_path}) doesn't exist.`);
      }
      const script = this.nextDeployment;
      const steps = script.inProgressPolls ?? 2;
      const d: EmulatedDeployment = {
        deployment_id: randomUUID().replaceAll("-", "").slice(0, 32),
        source_code_path: source,
        mode: b.mode ?? "SNAPSHOT",
        status: { state: "PENDING", message: "Deployment pending" },
        create_time: new Date().toISOString(),
        pending: this.runner
          ? []
          : [
              ...Array.from({ length: steps }, () => ({
                state: "IN_PROGRESS",
                message: "Deploying the app",
              })),
              { state: script.final, message: script.message ?? script.final },
            ],
      };
      app.deployments.push(d);
      app.appState = "DEPLOYING";
      if (this.runner) void this.runDeployment(app, d);
      const { pending: _p, ...shape } = d;
      return shape;
    });
    w.route("GET", "/api/2.0/apps/:name/deployments/:id", ({ req, params }) => {
      this.auth(req);
      const app = this.app(params.name!);
      const d = app.deployments.find((x) => x.deployment_id === params.id);
      if (!d) throw new ApiError(404, "RESOURCE_DOES_NOT_EXIST", `Deployment ${params.id} does not exist.`);
      const next = d.pending.shift();
      if (next) {
        d.status = next;
        if (next.state === "IN_PROGRESS" && d.pending.length === 1)
          for (const line of this.nextDeployment.logLines ?? []) this.logs.push("APP", line);
        if (next.state === "SUCCEEDED") {
          app.activeId = d.deployment_id;
          app.appState = "RUNNING";
        } else if (next.state === "FAILED") app.appState = "CRASHED";
      }
      const { pending: _p, ...shape } = d;
      return shape;
    });
  }

  /**
   * The environment the platform gives the app's process: its own variables, app.yaml's env with each
   * `valueFrom` resolved from the app's resources (a secret → its value; a postgres resource → the
   * endpoint path; a database resource → the host), and PG* for a database resource.
   */
  appEnvironment(
    app: EmulatedApp,
    appYaml: { env?: { name: string; value?: string; valueFrom?: string }[] },
  ) {
    const runner = this.runner;
    if (!runner) throw new Error("no runner");
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: os.tmpdir(),
      DATABRICKS_APP_PORT: String(runner.appPort),
      DATABRICKS_APP_NAME: app.name,
      DATABRICKS_WORKSPACE_ID: WORKSPACE_ID,
      DATABRICKS_HOST: this.workspace.url,
      DATABRICKS_CLIENT_ID: app.sp.clientId,
      DATABRICKS_CLIENT_SECRET: app.sp.clientSecret,
    };
    for (const r of app.resources) {
      const db = r.postgres ? this.database(r.postgres.database) : undefined;
      if (db) {
        Object.assign(env, {
          PGHOST: runner.postgres.host,
          PGPORT: String(runner.postgres.port),
          PGDATABASE: db.postgresDatabase,
          PGUSER: app.sp.clientId,
          // Lakebase requires TLS; the embedded server has none (the one difference, as in `local`).
          PGSSLMODE: "disable",
          PGAPPNAME: app.name,
        });
      }
    }
    for (const e of appYaml.env ?? []) {
      if (e.value !== undefined) env[e.name] = String(e.value);
      else if (e.valueFrom !== undefined) {
        const r = app.resources.find((x) => x.name === e.valueFrom);
        if (!r) throw new Error(`app.yaml: valueFrom ${e.valueFrom} names no resource of app ${app.name}`);
        if (r.secret) env[e.name] = this.secrets.get(r.secret.scope)?.get(r.secret.key) ?? "";
        else if (r.postgres) env[e.name] = `${r.postgres.branch}/endpoints/primary`;
        else if (r.database) env[e.name] = runner.postgres.host;
      }
    }
    return env;
  }

  private async runDeployment(app: EmulatedApp, d: EmulatedDeployment): Promise<void> {
    const runner = this.runner!;
    const fail = (message: string) => {
      d.status = { state: "FAILED", message };
      app.appState = "CRASHED";
    };
    d.status = { state: "IN_PROGRESS", message: "Preparing source code for new app deployment." };
    try {
      // A SNAPSHOT: later syncs do not change what this deployment runs.
      const snapshot = path.join(this.fsRoot, ".snapshots", d.deployment_id);
      mkdirSync(path.dirname(snapshot), { recursive: true });
      cpSync(this.localPath(d.source_code_path), snapshot, { recursive: true, verbatimSymlinks: true });
      const appYamlFile = path.join(snapshot, "app.yaml");
      if (!existsSync(appYamlFile)) return fail("app.yaml not found in the source code path");
      const appYaml = parseYaml(readFileSync(appYamlFile, "utf8")) as {
        command?: string[];
        env?: { name: string; value?: string; valueFrom?: string }[];
      };
      const env = this.appEnvironment(app, appYaml);
      await this.stopRunning();
      d.status = { state: "IN_PROGRESS", message: "Starting app with command" };
      const proc = spawnAppProcess({
        command: appYaml.command ?? ["npm", "run", "start"],
        cwd: snapshot,
        env,
        onLine: (_source, line) => this.logs.push("APP", line),
      });
      this.running = { app: app.name, process: proc, deploymentId: d.deployment_id };
      let exited: { code: number | null } | undefined;
      void proc.exited.then((e) => {
        exited = e;
        if (this.running?.process === proc) this.running = undefined;
        if (d.status.state === "SUCCEEDED" && app.activeId === d.deployment_id) app.appState = "CRASHED";
      });
      const deadline = Date.now() + (runner.startTimeoutMs ?? 60_000);
      while (!exited) {
        if (await portOpen(runner.appPort)) {
          // Listening is not enough: an app that exits right after (as ours does on a fatal start error
          // after opening its port) fails its deployment.
          await new Promise((r) => setTimeout(r, runner.settleMs ?? 1500));
          if (exited) break;
          d.status = { state: "SUCCEEDED", message: "App started successfully" };
          app.activeId = d.deployment_id;
          app.appState = "RUNNING";
          return;
        }
        if (Date.now() > deadline) {
          await proc.stop(1000);
          return fail("App did not listen on DATABRICKS_APP_PORT in time");
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      fail(`App exited with code ${(exited as { code: number | null }).code ?? "?"}`);
    } catch (err) {
      fail(`Deployment failed: ${(err as Error).message}`);
    }
  }

  private registerSecrets(): void {
    const w = this.workspace;
    w.route("POST", "/api/2.0/secrets/scopes/create", ({ req, body }) => {
      this.auth(req);
      const scope = String((body as { scope?: string }).scope);
      if (this.secrets.has(scope))
        throw new ApiError(400, "RESOURCE_ALREADY_EXISTS", `Scope ${scope} already exists!`);
      this.secrets.set(scope, new Map());
      return {};
    });
    w.route("POST", "/api/2.0/secrets/scopes/delete", ({ req, body }) => {
      this.auth(req);
      const scope = String((body as { scope?: string }).scope);
      if (!this.secrets.has(scope))
        throw new ApiError(404, "RESOURCE_DOES_NOT_EXIST", `Scope ${scope} does not exist!`);
      this.secrets.delete(scope);
      return {};
    });
    w.route("GET", "/api/2.0/secrets/list", ({ req, query }) => {
      this.auth(req);
      const scope = query.get("scope") ?? "";
      const s = this.secrets.get(scope);
      if (!s) throw new ApiError(404, "RESOURCE_DOES_NOT_EXIST", `Scope ${scope} does not exist!`);
      return { secrets: [...s.keys()].map((key) => ({ key, last_updated_timestamp: Date.now() })) };
    });
    w.route("POST", "/api/2.0/secrets/put", ({ req, body }) => {
      this.auth(req);
      const b = body as { scope?: string; key?: string; string_value?: string; bytes_value?: string };
      const s = this.secrets.get(String(b.scope));
      if (!s) throw new ApiError(404, "RESOURCE_DOES_NOT_EXIST", `Scope ${b.scope} does not exist!`);
      // `secrets put-secret` with the value on stdin sends it as bytes_value (base64).
      s.set(
        String(b.key),
        b.bytes_value === undefined
          ? String(b.string_value)
          : Buffer.from(b.bytes_value, "base64").toString(),
      );
      return {};
    });
  }

  private registerWorkspaceFiles(): void {
    const w = this.workspace;
    w.route("POST", "/api/2.0/workspace/mkdirs", ({ req, body }) => {
      this.auth(req);
      const p = String((body as { path?: string }).path);
      this.workspaceDirs.add(p);
      mkdirSync(this.localPath(p), { recursive: true });
      return {};
    });
    w.route("GET", "/api/2.0/workspace/get-status", ({ req, query }) => {
      this.auth(req);
      const p = query.get("path") ?? "";
      if (!existsSync(this.localPath(p)))
        throw new ApiError(404, "RESOURCE_DOES_NOT_EXIST", `Path (${p}) doesn't exist.`);
      return { path: p, object_type: "FILE" };
    });
  }

  private registerPostgres(): void {
    const w = this.workspace;
    const project = (id: string) => {
      const p = this.projects.get(id);
      if (!p) throw new ApiError(404, "NOT_FOUND", `Project projects/${id} not found.`);
      return p;
    };
    const branch = (p: string, b: string) => {
      const br = project(p).branches.get(b);
      if (!br) throw new ApiError(404, "NOT_FOUND", `Branch projects/${p}/branches/${b} not found.`);
      return br;
    };
    const databaseJson = (p: string, b: string, d: PostgresDatabaseState) => ({
      database_id: d.databaseId,
      name: `projects/${p}/branches/${b}/databases/${d.databaseId}`,
      parent: `projects/${p}/branches/${b}`,
      status: { database_id: d.databaseId, postgres_database: d.postgresDatabase, role: d.role },
    });
    // A workspace without Lakebase Autoscaling (cloud or region) has no Postgres API: the platform's answer
    // for an API it does not serve (assumed shape: ENDPOINT_NOT_FOUND, as for any unknown API path).
    const noAutoscaling = (method: string) => {
      if (!this.autoscalingAvailable)
        throw new ApiError(404, "ENDPOINT_NOT_FOUND", `No API found for '${method} /postgres/projects'`);
    };
    w.route("GET", "/api/2.0/postgres/projects", ({ req }) => {
      this.auth(req);
      noAutoscaling("GET");
      return {
        projects: [...this.projects.values()].map((p) => ({ name: `projects/${p.projectId}` })),
      };
    });
    w.route("POST", "/api/2.0/postgres/projects", ({ req, query, body }) => {
      this.auth(req);
      noAutoscaling("POST");
      const id = query.get("project_id") ?? "";
      if (this.projects.has(id))
        throw new ApiError(409, "ALREADY_EXISTS", `Project projects/${id} already exists.`);
      // A new project comes with the branch `production`, its read-write endpoint `primary` and the
      // database databricks_postgres (its id here is our assumption; the docs name only the database).
      const production: PostgresBranchState = {
        roles: new Map(),
        databases: new Map([
          [
            "databricks-postgres",
            { databaseId: "databricks-postgres", postgresDatabase: "databricks_postgres", role: "" },
          ],
        ]),
        endpoints: new Set(["primary"]),
      };
      const spec = ((body ?? {}) as { spec?: { display_name?: string } }).spec;
      this.projects.set(id, {
        projectId: id,
        displayName: spec?.display_name,
        branches: new Map([["production", production]]),
      });
      return {
        name: `projects/${id}`,
        project_id: id,
        status: { default_branch: `projects/${id}/branches/production` },
      };
    });
    w.route("GET", "/api/2.0/postgres/projects/:p", ({ req, params }) => {
      this.auth(req);
      const p = project(params.p!);
      return {
        name: `projects/${p.projectId}`,
        project_id: p.projectId,
        status: { display_name: p.displayName },
      };
    });
    w.route("DELETE", "/api/2.0/postgres/projects/:p", ({ req, params, query }) => {
      this.auth(req);
      project(params.p!);
      this.projects.delete(params.p!);
      this.deletedProjects.push({ projectId: params.p!, purged: query.get("purge") === "true" });
      return {};
    });
    w.route("GET", "/api/2.0/permissions/database-projects/:p", ({ req, params }) => {
      this.auth(req);
      project(params.p!);
      if (this.unmanageableProjects.has(params.p!))
        throw new ApiError(
          403,
          "PERMISSION_DENIED",
          `User ${this.userName} does not have Manage permissions on database-project ${params.p}.`,
        );
      return { object_id: `/database-projects/${params.p}`, access_control_list: [] };
    });
    w.route("POST", "/api/2.0/postgres/projects/:p/branches/:b/roles", ({ req, params, query, body }) => {
      this.auth(req);
      const br = branch(params.p!, params.b!);
      const id = query.get("role_id") ?? "";
      if (br.roles.has(id)) throw new ApiError(409, "ALREADY_EXISTS", `Role ${id} already exists.`);
      const spec = ((body ?? {}) as { spec?: { postgres_role?: string } }).spec;
      br.roles.set(id, { postgresRole: spec?.postgres_role ?? id });
      return { name: `projects/${params.p}/branches/${params.b}/roles/${id}` };
    });
    w.route(
      "POST",
      "/api/2.0/postgres/projects/:p/branches/:b/databases",
      async ({ req, params, query, body }) => {
        this.auth(req);
        const br = branch(params.p!, params.b!);
        const id = query.get("database_id") ?? "";
        if (!DATABASE_ID_PATTERN.test(id))
          throw new ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            `Field database_id must match pattern ^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$, got '${id}'.`,
          );
        const spec = ((body ?? {}) as { spec?: { postgres_database?: string; role?: string } }).spec ?? {};
        if (!spec.role) throw new ApiError(400, "INVALID_PARAMETER_VALUE", "Field role is required.");
        const roleId = /\/roles\/([^/]+)$/.exec(spec.role)?.[1];
        if (!roleId || !br.roles.has(roleId))
          throw new ApiError(404, "NOT_FOUND", `Role ${spec.role} not found.`);
        if (br.databases.has(id)) throw new ApiError(409, "ALREADY_EXISTS", `Database ${id} already exists.`);
        const pgName = spec.postgres_database ?? id;
        if ([...br.databases.values()].some((d) => d.postgresDatabase === pgName))
          throw new ApiError(409, "ALREADY_EXISTS", `Postgres database ${pgName} already exists.`);
        const db = { databaseId: id, postgresDatabase: pgName, role: spec.role };
        br.databases.set(id, db);
        return databaseJson(params.p!, params.b!, db);
      },
    );
    w.route("GET", "/api/2.0/postgres/projects/:p/branches/:b/databases", ({ req, params }) => {
      this.auth(req);
      const br = branch(params.p!, params.b!);
      return { databases: [...br.databases.values()].map((d) => databaseJson(params.p!, params.b!, d)) };
    });
    w.route("GET", "/api/2.0/postgres/projects/:p/branches/:b/databases/:d", ({ req, params }) => {
      this.auth(req);
      const db = branch(params.p!, params.b!).databases.get(params.d!);
      if (!db) throw new ApiError(404, "NOT_FOUND", `Database ${params.d} not found.`);
      return databaseJson(params.p!, params.b!, db);
    });
    // Each credential becomes the caller's role password, valid until its expiry (PostgreSQL refuses it after).
    w.route("POST", "/api/2.0/postgres/credentials", async ({ req, body }) => {
      const who = this.auth(req);
      const endpoint = String((body as { endpoint?: string } | undefined)?.endpoint ?? "");
      const m = /^(projects\/[^/]+\/branches\/[^/]+)\/endpoints\/([^/]+)$/.exec(endpoint);
      if (!m || !this.branch(m[1]!)?.endpoints.has(m[2]!))
        throw new ApiError(404, "NOT_FOUND", `Endpoint '${endpoint}' does not exist.`);
      const token = `lbc-${randomUUID()}`;
      const expires = new Date(Date.now() + (this.runner?.credentialTtlSeconds ?? 3600) * 1000);
      if (this.runner) await setRolePassword(this.runner.postgres.adminUrl(), who, token, expires);
      return { token, expire_time: expires.toISOString() };
    });
    w.route("GET", "/api/2.0/database/instances/:name", ({ req, params }) => {
      this.auth(req);
      if (!this.instances.has(params.name!))
        throw new ApiError(
          404,
          "RESOURCE_DOES_NOT_EXIST",
          `Database instance '${params.name}' does not exist.`,
        );
      return { name: params.name, state: "AVAILABLE" };
    });
    w.route("POST", "/api/2.0/database/instances", () => {
      throw new ApiError(
        400,
        "INVALID_PARAMETER_VALUE",
        "New Lakebase Provisioned instances can no longer be created; create a Lakebase Autoscaling project.",
      );
    });
  }
}

async function portOpen(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = connect({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
