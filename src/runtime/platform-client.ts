import { randomUUID } from "node:crypto";
import { DatabricksError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";

export interface DatabaseCredential {
  token: string;
  expiresAt: Date;
}

export interface AppInfo {
  name: string;
  url?: string;
}

export interface DatabaseInstanceInfo {
  name: string;
  state?: string;
}

/**
 * A credential answer as the runtime can use it: a token and a real expiry. Anything else is a
 * Databricks-side fault, said as such (a `new Date("garbage")` would crash later as "Invalid time value").
 */
function credentialFrom(token: unknown, expiry: unknown, field: string, what: string): DatabaseCredential {
  if (typeof token !== "string" || token === "")
    throw new DatabricksError("credential_invalid", `${what}: the answer holds no token`);
  registerSecret(token);
  const expiresAt = typeof expiry === "string" ? new Date(expiry) : new Date(Number.NaN);
  if (Number.isNaN(expiresAt.getTime()))
    throw new DatabricksError(
      "credential_invalid",
      `${what}: the answer's ${field} is ${JSON.stringify(expiry ?? null)}, not a time`,
      "a Databricks-side fault: retry later; if it persists, report it with the app's logs",
    );
  return { token, expiresAt };
}

/**
 * The few workspace REST calls the runtime makes from inside the app, as the app's service principal
 * (OAuth M2M with DATABRICKS_CLIENT_ID/SECRET): its public URL, a Lakebase instance's state, database
 * credentials. A small `fetch`-based client, not the CLI's SDK `WorkspaceClient` (which acts as the person
 * at the keyboard): the runtime bundle stays small, and the SDK has no `postgres` service.
 */
export class AppPlatformClient {
  private accessToken: { value: string; expiresAt: number } | undefined;

  constructor(
    private readonly host: string,
    private readonly clientId: string,
    private readonly clientSecret: string,
    private readonly timeoutMs = 15_000,
    /** Aborts every call in flight (the app was asked to stop). */
    private readonly signal?: AbortSignal,
  ) {}

  private async send(path: string, init: RequestInit, what: string): Promise<Response> {
    try {
      const timeout = AbortSignal.timeout(this.timeoutMs);
      return await fetch(`${this.host}${path}`, {
        ...init,
        signal: this.signal ? AbortSignal.any([timeout, this.signal]) : timeout,
      });
    } catch (err) {
      if (this.signal?.aborted) throw this.signal.reason;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new DatabricksError(
        "workspace_unreachable",
        `${what}: cannot reach ${this.host} (${cause?.code ?? cause?.message ?? (err as Error).message})`,
        "check DATABRICKS_HOST and the network from the app",
        { cause: err },
      );
    }
  }

  /** OAuth M2M: client_credentials with Basic auth, scope all-apis; cached until a minute before expiry. */
  async token(): Promise<string> {
    if (this.accessToken && this.accessToken.expiresAt - Date.now() > 60_000) return this.accessToken.value;
    return (await this.issueToken()).token;
  }

  /**
   * A new service-principal token and when it expires, never the cached one: for a keeper that renews on
   * its own schedule (databricks-tools/tokens.ts). It also becomes the cached token of {@link token}.
   */
  async issueToken(): Promise<{ token: string; expiresAt: Date }> {
    const basic = Buffer.from(
      `${encodeURIComponent(this.clientId)}:${encodeURIComponent(this.clientSecret)}`,
    ).toString("base64");
    registerSecret(basic);
    const res = await this.send(
      "/oidc/v1/token",
      {
        method: "POST",
        headers: { authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ grant_type: "client_credentials", scope: "all-apis" }).toString(),
      },
      "service principal token",
    );
    const body = (await res.json().catch(() => ({}))) as {
      access_token?: string;
      expires_in?: number;
      error_description?: string;
    };
    if (!res.ok || !body.access_token) {
      throw new DatabricksError(
        res.status === 401 || res.status === 400 ? "sp_auth_refused" : "sp_auth_failed",
        `the workspace refused the app's service principal credentials (HTTP ${res.status}${body.error_description ? `: ${body.error_description}` : ""})`,
        "check DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET (the platform sets them for the app)",
      );
    }
    registerSecret(body.access_token);
    this.accessToken = { value: body.access_token, expiresAt: Date.now() + (body.expires_in ?? 3600) * 1000 };
    return { token: body.access_token, expiresAt: new Date(this.accessToken.expiresAt) };
  }

  private async api<T>(method: string, path: string, what: string, body?: unknown): Promise<T> {
    const token = await this.token();
    const res = await this.send(
      path,
      {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      },
      what,
    );
    const json = (await res.json().catch(() => ({}))) as T & { error_code?: string; message?: string };
    if (!res.ok) {
      throw new DatabricksError(
        json.error_code === "RESOURCE_DOES_NOT_EXIST" || json.error_code === "NOT_FOUND" || res.status === 404
          ? "not_found"
          : res.status === 403 || json.error_code === "PERMISSION_DENIED"
            ? "forbidden"
            : "api_error",
        `${what}: HTTP ${res.status} ${json.error_code ?? ""} ${json.message ?? ""}`.trim(),
      );
    }
    return json;
  }

  /** The fallback for the public URL; the app's service principal may lack the permission to read it. */
  async getApp(name: string): Promise<AppInfo> {
    try {
      return await this.api("GET", `/api/2.0/apps/${encodeURIComponent(name)}`, `app ${name}`);
    } catch (err) {
      if (err instanceof DatabricksError && err.code === "forbidden")
        throw new DatabricksError(
          "app_url_unknown",
          `the public URL is unknown: app.yaml sets no METAMCP_APP_URL and the app's service principal may not read app ${name} (${err.message})`,
          "deploy with `make bundle-deploy`, which writes the URL into app.yaml, or grant the app's service principal CAN VIEW on the app",
        );
      throw err;
    }
  }

  getDatabaseInstance(name: string): Promise<DatabaseInstanceInfo> {
    return this.api(
      "GET",
      `/api/2.0/database/instances/${encodeURIComponent(name)}`,
      `Lakebase instance ${name}`,
    );
  }

  /** Lakebase Autoscaling: `POST /api/2.0/postgres/credentials {endpoint}` → `{token, expire_time}`. */
  async postgresCredential(endpoint: string): Promise<DatabaseCredential> {
    const r = await this.api<{ token: string; expire_time: string }>(
      "POST",
      "/api/2.0/postgres/credentials",
      `database credential for endpoint ${endpoint}`,
      { endpoint },
    );
    return credentialFrom(
      r.token,
      r.expire_time,
      "expire_time",
      `database credential for endpoint ${endpoint}`,
    );
  }

  /** Lakebase Provisioned: `POST /api/2.0/database/credentials` → `{token, expiration_time}`. */
  async databaseCredential(instanceName: string): Promise<DatabaseCredential> {
    const r = await this.api<{ token: string; expiration_time: string }>(
      "POST",
      "/api/2.0/database/credentials",
      `database credential for instance ${instanceName}`,
      { request_id: randomUUID(), instance_names: [instanceName] },
    );
    return credentialFrom(
      r.token,
      r.expiration_time,
      "expiration_time",
      `database credential for instance ${instanceName}`,
    );
  }
}
