import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
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

/**
 * A Databricks workspace on 127.0.0.1 for tests, following the official REST shapes
 * (../shared/databricks/cli-recorded): OIDC, Apps (get, create, start, deploy, deployments, delete),
 * secrets, workspace mkdirs, SCIM Me; and one app's host behind the Apps proxy (bearer token required,
 * 302 to login without one, `/logz/stream`) forwarding to a real HTTP server the test runs.
 */
export interface EmulatedDeployment {
  deployment_id: string;
  source_code_path: string;
  mode: string;
  status: { state: string; message: string };
  create_time: string;
  /** States still to go through, one per GET. */
  pending: { state: string; message: string }[];
}

export interface EmulatedApp {
  name: string;
  computeState: string;
  appState: string;
  deployments: EmulatedDeployment[];
  activeId?: string;
  /** How many GETs a STARTING compute takes to become ACTIVE. */
  startPolls: number;
  /** Refuses deploys as "in progress" with nothing pending, as the platform does after a failure. */
  settling?: boolean;
}

export interface DeploymentScript {
  /** The final state after the IN_PROGRESS polls. */
  final: "SUCCEEDED" | "FAILED" | "CANCELLED";
  message?: string;
  inProgressPolls?: number;
  /** Lines the app "writes" while this deployment runs (they reach /logz/stream). */
  logLines?: string[];
}

export class DatabricksEmulator {
  readonly tokens = new TokenStore();
  readonly workspace = new PlatformServer();
  readonly appHost: PlatformServer;
  readonly logs = new LogBuffer();
  readonly apps = new Map<string, EmulatedApp>();
  readonly secrets = new Map<string, Map<string, string>>();
  readonly workspaceDirs = new Set<string>();
  readonly clients = new Map<string, string>();
  readonly userName = "someone@example.com";
  /** What the next deployment does. */
  nextDeployment: DeploymentScript = { final: "SUCCEEDED", message: "App started successfully" };
  /** The Apps proxy's cuts (Databricks: 120 s a request, ~300 s a stream); tests shorten them. */
  readonly proxyLimits = { ...DEFAULT_PROXY_LIMITS };
  /** false: the Apps proxy refuses every token (sends the browser to log in). */
  proxyAcceptsTokens = true;
  private proxy: AppsProxy | undefined;

  /**
   * `appTls`: the app's host serves HTTPS and the Apps API gives its URL without a scheme, as the real
   * API may (`<name>-<id>.<region>.databricksapps.com`).
   */
  constructor(
    private readonly appTarget: string,
    appTls?: { key: string; cert: string },
  ) {
    this.appHost = new PlatformServer({ tls: appTls });
    registerOidc(this.workspace, { tokens: this.tokens, clients: this.clients });
    registerOidcDiscovery(this.workspace);
    this.registerApps();
    this.registerSecrets();
    this.workspace.route("POST", "/api/2.0/workspace/mkdirs", ({ req, body }) => {
      this.auth(req);
      this.workspaceDirs.add(String((body as { path?: string }).path));
      return {};
    });
    this.workspace.route("GET", "/api/2.0/preview/scim/v2/Me", ({ req }) => {
      this.auth(req);
      return { id: "1234", userName: this.userName, active: true };
    });
  }

  /** Personal access tokens: the REST API takes them, the Apps proxy does not. */
  readonly pats = new Set<string>();

  private auth(req: IncomingMessage): void {
    const pat = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (pat && this.pats.has(pat)) return;
    requireBearer(this.tokens, req);
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

  async close(): Promise<void> {
    this.proxy?.close();
    await this.appHost.close();
    await this.workspace.close();
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
    const pending = app.deployments.find((d) => d.pending.length > 0 || d.status.state === "PENDING");
    return {
      name: app.name,
      url: this.appHost.url.replace(/^https:\/\//, ""),
      app_status: { state: app.appState, message: `App is ${app.appState.toLowerCase()}.` },
      compute_status: {
        state: app.computeState,
        message: `App compute is ${app.computeState.toLowerCase()}.`,
      },
      service_principal_client_id: "sp-client-id",
      ...(app.activeId ? { active_deployment: dep(app.activeId) } : {}),
      ...(pending ? { pending_deployment: dep(pending.deployment_id) } : {}),
    };
  }

  addApp(name: string, computeState = "ACTIVE"): EmulatedApp {
    const app: EmulatedApp = { name, computeState, appState: "UNAVAILABLE", deployments: [], startPolls: 1 };
    this.apps.set(name, app);
    return app;
  }

  private registerApps(): void {
    const w = this.workspace;
    w.route("POST", "/api/2.0/apps", ({ req, body }) => {
      this.auth(req);
      const name = String((body as { name?: string }).name);
      if (this.apps.has(name))
        throw new ApiError(409, "RESOURCE_ALREADY_EXISTS", `App ${name} already exists.`);
      return this.appJson(this.addApp(name, "STOPPED"));
    });
    w.route("GET", "/api/2.0/apps/:name", ({ req, params }) => {
      this.auth(req);
      const app = this.app(params.name!);
      if (app.computeState === "STARTING") {
        app.startPolls--;
        if (app.startPolls < 0) app.computeState = "ACTIVE";
      }
      return this.appJson(app);
    });
    w.route("DELETE", "/api/2.0/apps/:name", ({ req, params }) => {
      this.auth(req);
      this.app(params.name!);
      this.apps.delete(params.name!);
      return {};
    });
    w.route("POST", "/api/2.0/apps/:name/start", ({ req, params }) => {
      this.auth(req);
      const app = this.app(params.name!);
      if (app.computeState === "STOPPED") app.computeState = "STARTING";
      return this.appJson(app);
    });
    w.route("POST", "/api/2.0/apps/:name/deployments", ({ req, params, body }) => {
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
      if (app.settling || app.deployments.some((d) => d.pending.length > 0)) {
        throw new ApiError(
          400,
          "INVALID_PARAMETER_VALUE",
          `Cannot deploy app ${app.name} as there is an active deployment in progress.`,
        );
      }
      if (!b.source_code_path || ![...this.workspaceDirs].some((d) => b.source_code_path!.startsWith(d))) {
        throw new ApiError(404, "RESOURCE_DOES_NOT_EXIST", `Path (${b.source_code_path}) doesn't exist.`);
      }
      const script = this.nextDeployment;
      const steps = script.inProgressPolls ?? 2;
      const d: EmulatedDeployment = {
        deployment_id: randomUUID().replaceAll("-", "").slice(0, 32),
        source_code_path: b.source_code_path,
        mode: b.mode ?? "SNAPSHOT",
        status: { state: "PENDING", message: "Deployment pending" },
        create_time: new Date().toISOString(),
        pending: [
          ...Array.from({ length: steps }, () => ({ state: "IN_PROGRESS", message: "Deploying the app" })),
          { state: script.final, message: script.message ?? script.final },
        ],
      };
      app.deployments.push(d);
      app.appState = "DEPLOYING";
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
      this.secrets.delete(String((body as { scope?: string }).scope));
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
      const b = body as { scope?: string; key?: string; string_value?: string };
      const s = this.secrets.get(String(b.scope));
      if (!s) throw new ApiError(404, "RESOURCE_DOES_NOT_EXIST", `Scope ${b.scope} does not exist!`);
      s.set(String(b.key), String(b.string_value));
      return {};
    });
  }
}
