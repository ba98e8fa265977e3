import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/local/postgres.js";
import { clearSecrets, maskSecrets } from "../../src/log/secrets.js";
import { CREDENTIAL_DIR_PREFIX, removeLeftoverCredentialDirs } from "../../src/runtime/credentials.js";
import { authSecretProblem, RUNTIME_VARIABLES, readRuntimeEnv } from "../../src/runtime/env.js";
import { PROJECT_ROOT } from "../support/cli.js";
import { createFakeAppTree } from "../support/fake-app-tree.js";

/** What the platform and our app.yaml give a healthy app (values shaped like the real ones). */
const GOOD: Record<string, string> = {
  DATABRICKS_APP_PORT: "8000",
  DATABRICKS_APP_NAME: "metamcp-dev",
  DATABRICKS_HOST: "adb-1234567890123456.7.azuredatabricks.net",
  DATABRICKS_CLIENT_ID: "6c0e1f9a-0000-4000-8000-000000000001",
  DATABRICKS_CLIENT_SECRET: "dose0123456789abcdef0123456789abcdef",
  DATABRICKS_WORKSPACE_ID: "1234567890123456",
  PGHOST: "instance-abc.database.cloud.databricks.com",
  PGPORT: "5432",
  PGDATABASE: "databricks_postgres",
  PGUSER: "6c0e1f9a-0000-4000-8000-000000000001",
  PGSSLMODE: "require",
  PGAPPNAME: "metamcp-dev",
  LAKEBASE_ENDPOINT: "projects/metamcp-dev/branches/production/endpoints/primary",
  BETTER_AUTH_SECRET: "Qm9vdHN0cmFwLXJlYWwtcmFuZG9tLXNlY3JldA==",
};

function problemsOf(overrides: Record<string, string | undefined>): string {
  try {
    readRuntimeEnv({ ...GOOD, ...overrides }, "/app/runtime");
    return "";
  } catch (err) {
    return (err as Error).message;
  }
}

afterEach(() => clearSecrets());

describe("the runtime's environment: every variable checked, one message naming it and the accepted form", () => {
  it("accepts what the platform gives, with the documented defaults", () => {
    const env = readRuntimeEnv(GOOD, "/app/runtime");
    expect(env).toMatchObject({
      appPort: 8000,
      listenHost: "0.0.0.0",
      host: "https://adb-1234567890123456.7.azuredatabricks.net",
      schema: "metamcp_app",
      dbWaitMs: 120_000,
      metamcpRoot: "/app/metamcp",
      pg: { port: 5432, sslmode: "require" },
      backendPort: 12009,
      frontendPort: 12008,
      trustedProxyAddresses: [],
      sessionIdleMs: 30 * 60_000,
    });
    expect(env.defaultEndpoint).toBeUndefined();
    expect(
      readRuntimeEnv(
        { ...GOOD, METAMCP_SESSION_IDLE_MINUTES: "0.5", METAMCP_TRUSTED_PROXY_ADDRESSES: "127.0.0.2, ::1" },
        "/x",
      ),
    ).toMatchObject({ sessionIdleMs: 30_000, trustedProxyAddresses: ["127.0.0.2", "::1"] });
    expect(
      readRuntimeEnv({ ...GOOD, METAMCP_BACKEND_PORT: "22009", METAMCP_FRONTEND_PORT: "22008" }, "/x"),
    ).toMatchObject({ backendPort: 22009, frontendPort: 22008 });
    expect(readRuntimeEnv({ ...GOOD, METAMCP_LISTEN_HOST: "127.0.0.1" }, "/x").listenHost).toBe("127.0.0.1");
    expect(readRuntimeEnv({ ...GOOD, METAMCP_LISTEN_HOST: "::1" }, "/x").listenHost).toBe("::1");
    expect(readRuntimeEnv({ ...GOOD, METAMCP_DB_WAIT_SECONDS: "0" }, "/x").dbWaitMs).toBe(0);
  });

  it.each([
    ["PGPORT", "abc", /PGPORT="abc" is not valid: a TCP port, a whole number from 1 to 65535/],
    ["PGPORT", "70000", /PGPORT="70000" is not valid: a TCP port/],
    ["PGPORT", " 5432", /PGPORT=" 5432" is not valid/],
    ["DATABRICKS_APP_PORT", "99999", /DATABRICKS_APP_PORT="99999" is not valid: a TCP port/],
    ["DATABRICKS_APP_PORT", "0", /DATABRICKS_APP_PORT="0" is not valid/],
    ["DATABRICKS_APP_PORT", "8000.5", /DATABRICKS_APP_PORT="8000.5" is not valid/],
    ["DATABRICKS_APP_PORT", "", /DATABRICKS_APP_PORT is not set/],
    [
      "METAMCP_DB_WAIT_SECONDS",
      "abc",
      /METAMCP_DB_WAIT_SECONDS="abc" is not valid: whole seconds from 0 to 3600/,
    ],
    ["METAMCP_DB_WAIT_SECONDS", "-5", /METAMCP_DB_WAIT_SECONDS="-5" is not valid/],
    ["METAMCP_DB_WAIT_SECONDS", "99999999", /METAMCP_DB_WAIT_SECONDS="99999999" is not valid/],
    ["METAMCP_BACKEND_PORT", "abc", /METAMCP_BACKEND_PORT="abc" is not valid: a TCP port/],
    ["METAMCP_FRONTEND_PORT", "0", /METAMCP_FRONTEND_PORT="0" is not valid: a TCP port/],
    ["METAMCP_BACKEND_PORT", "12008", /METAMCP_BACKEND_PORT and METAMCP_FRONTEND_PORT are both 12008/],
    ["METAMCP_FRONTEND_PORT", "8000", /METAMCP_FRONTEND_PORT and DATABRICKS_APP_PORT are both 8000/],
    ["METAMCP_LISTEN_HOST", "example.com", /METAMCP_LISTEN_HOST="example.com" is not valid: an IP address/],
    ["METAMCP_LISTEN_HOST", "999.1.1.1", /METAMCP_LISTEN_HOST="999.1.1.1" is not valid/],
    ["DATABRICKS_HOST", "not a url", /DATABRICKS_HOST="not a url" is not valid: the workspace URL/],
    ["DATABRICKS_HOST", "ftp://x.example.com", /DATABRICKS_HOST="ftp:\/\/x.example.com" is not valid/],
    ["DATABRICKS_HOST", "https://x.example.com/some/path", /DATABRICKS_HOST=.* is not valid: .*no path/],
    ["METAMCP_APP_URL", "https://app.example.com/metamcp", /METAMCP_APP_URL=.* is not valid: .*no path/],
    ["DATABRICKS_APP_NAME", "My App", /DATABRICKS_APP_NAME="My App" is not valid/],
    ["DATABRICKS_CLIENT_ID", "a b", /DATABRICKS_CLIENT_ID="a b" is not valid/],
    [
      "DATABRICKS_WORKSPACE_ID",
      "abc",
      /DATABRICKS_WORKSPACE_ID="abc" is not valid: the workspace id, digits/,
    ],
    ["PGHOST", "a host", /PGHOST="a host" is not valid/],
    ["PGHOST", undefined, /PGHOST is not set \(injected by the app's Lakebase database resource/],
    ["PGSSLMODE", "required", /PGSSLMODE="required" is not valid: one of disable, allow, prefer, require/],
    ["PGUSER", " sp ", /PGUSER=" sp " is not valid/],
    ["PGDATABASE", "d".repeat(64), /PGDATABASE=.* is not valid: a database name, at most 63/],
    ["PGAPPNAME", "a".repeat(64), /PGAPPNAME=.* is not valid/],
    ["METAMCP_DB_SCHEMA", "Public", /METAMCP_DB_SCHEMA="Public" must be a PostgreSQL identifier/],
    ["METAMCP_DB_SCHEMA", "public", /METAMCP_DB_SCHEMA="public" must not be `public`/],
    [
      "LAKEBASE_KIND",
      "serverless",
      /LAKEBASE_KIND="serverless" is not valid: one of autoscaling, provisioned/,
    ],
    ["LAKEBASE_ENDPOINT", "primary", /LAKEBASE_ENDPOINT="primary" is not valid: an endpoint path/],
    ["LAKEBASE_ENDPOINT", undefined, /LAKEBASE_ENDPOINT is not set/],
    ["METAMCP_ROOT", " /app/metamcp", /METAMCP_ROOT=" \/app\/metamcp" is not valid: a directory path/],
    ["BOOTSTRAP_ENABLE", "maybe", /BOOTSTRAP_ENABLE="maybe" is not valid: true or false/],
    [
      "EXTRA_TRUSTED_ORIGINS",
      "https://a.example.com,,x",
      /EXTRA_TRUSTED_ORIGINS=.* is not valid: comma-separated origins/,
    ],
    ["LOG_LEVEL", "debug", /LOG_LEVEL="debug" is not valid: one of all, info, errors-only, none/],
    ["METAMCP_EMAIL_SIGNUP", "maybe", /METAMCP_EMAIL_SIGNUP="maybe" is not valid: on or off/],
    [
      "METAMCP_ENDPOINT_IDENTITY_DEFAULT",
      "false",
      /METAMCP_ENDPOINT_IDENTITY_DEFAULT="false" is not valid: one of on, off/,
    ],
    [
      "METAMCP_SESSION_IDLE_MINUTES",
      "0",
      /METAMCP_SESSION_IDLE_MINUTES="0" is not valid: minutes after which/,
    ],
    ["METAMCP_SESSION_IDLE_MINUTES", "1441", /METAMCP_SESSION_IDLE_MINUTES="1441" is not valid/],
    ["METAMCP_SESSION_IDLE_MINUTES", "ten", /METAMCP_SESSION_IDLE_MINUTES="ten" is not valid/],
    [
      "METAMCP_TRUSTED_PROXY_ADDRESSES",
      "proxy.local",
      /METAMCP_TRUSTED_PROXY_ADDRESSES="proxy.local" is not valid: comma-separated IP/,
    ],
    ["METAMCP_TRUSTED_PROXY_ADDRESSES", " , ", /METAMCP_TRUSTED_PROXY_ADDRESSES=" , " is not valid/],
    [
      "METAMCP_DEFAULT_ENDPOINT",
      "my endpoint",
      /METAMCP_DEFAULT_ENDPOINT="my endpoint" is not valid: a MetaMCP endpoint name/,
    ],
    // Every required variable says who sets it when it is missing.
    ["DATABRICKS_APP_NAME", undefined, /DATABRICKS_APP_NAME is not set \(set by the Apps platform\)/],
    ["DATABRICKS_HOST", undefined, /DATABRICKS_HOST is not set \(set by the Apps platform\)/],
    ["DATABRICKS_CLIENT_ID", undefined, /DATABRICKS_CLIENT_ID is not set \(the app's service principal/],
    ["DATABRICKS_CLIENT_SECRET", "", /DATABRICKS_CLIENT_SECRET is not set \(the app's service principal/],
    ["PGUSER", undefined, /PGUSER is not set \(injected by the app's Lakebase database resource\)/],
    ["PGDATABASE", undefined, /PGDATABASE is not set \(injected by the app's Lakebase database resource\)/],
    [
      "METAMCP_APP_URL",
      "not a url at all",
      /METAMCP_APP_URL="not a url at all" is not valid: the app's public origin/,
    ],
    ["METAMCP_AUDIT_DAYS", "3651", /METAMCP_AUDIT_DAYS="3651" is not valid: whole days to keep audit rows/],
    [
      "METAMCP_STDIO_SERVERS",
      "admins",
      /METAMCP_STDIO_SERVERS="admins" is not valid: one of managers, everyone, off/,
    ],
  ])("%s=%j is refused", (name, value, message) => {
    expect(problemsOf({ [name]: value })).toMatch(message);
  });

  it("an unset variable is said once, as not set (not also as not valid)", () => {
    const p = problemsOf({ DATABRICKS_HOST: undefined, DATABRICKS_APP_PORT: undefined });
    expect(p).toContain("DATABRICKS_HOST is not set");
    expect(p).toContain("DATABRICKS_APP_PORT is not set");
    expect(p).not.toMatch(/DATABRICKS_HOST[^;]* is not valid|DATABRICKS_APP_PORT[^;]* is not valid/);
  });

  it("a client secret with whitespace is refused without showing it, and is not masked", () => {
    const p = problemsOf({ DATABRICKS_CLIENT_SECRET: "dose0123 456789abcdef" });
    expect(p).toContain("DATABRICKS_CLIENT_SECRET is not valid: it contains whitespace (value not shown)");
    expect(p).not.toContain("dose0123");
    expect(maskSecrets("dose0123 456789abcdef")).toBe("dose0123 456789abcdef");
  });

  it("the platform's OTLP protocols are read only when the deployer names no collector of their own", () => {
    // With METAMCP_TELEMETRY_ENDPOINT its own protocol applies; the platform's are not the app's business.
    const own = {
      METAMCP_TELEMETRY: "otlp",
      METAMCP_TELEMETRY_ENDPOINT: "https://otel.example.com/v1/traces",
    };
    expect(problemsOf({ ...own, OTEL_EXPORTER_OTLP_PROTOCOL: "thrift" })).toBe("");
    expect(problemsOf({ OTEL_EXPORTER_OTLP_PROTOCOL: "thrift" })).toContain(
      'OTEL_EXPORTER_OTLP_PROTOCOL="thrift" is not valid: one of grpc, http/protobuf, http/json',
    );
    expect(problemsOf({ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "thrift" })).toContain(
      'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="thrift" is not valid',
    );
  });

  it("the tool-call audit: on, arguments off, 90 days by default; every setting checked", () => {
    expect(readRuntimeEnv(GOOD, "/app/runtime").audit).toEqual({ enabled: true, arguments: "off", days: 90 });
    expect(
      readRuntimeEnv(
        { ...GOOD, METAMCP_AUDIT: "off", METAMCP_AUDIT_ARGUMENTS: "hash", METAMCP_AUDIT_DAYS: "7" },
        "/app/runtime",
      ).audit,
    ).toEqual({ enabled: false, arguments: "hash", days: 7 });
    const p = problemsOf({ METAMCP_AUDIT: "yes", METAMCP_AUDIT_ARGUMENTS: "all", METAMCP_AUDIT_DAYS: "0" });
    expect(p).toContain('METAMCP_AUDIT="yes" is not valid: one of on, off');
    expect(p).toContain('METAMCP_AUDIT_ARGUMENTS="all" is not valid: one of off, hash, full');
    expect(p).toContain('METAMCP_AUDIT_DAYS="0" is not valid: whole days to keep audit rows, from 1 to 3650');
    expect(problemsOf({ METAMCP_AUDIT_DAYS: "90.5" })).toContain("METAMCP_AUDIT_DAYS");
  });

  it("telemetry: off by default, even where the platform names a collector", () => {
    const platform = {
      ...GOOD,
      // What the Apps platform sets when the app's telemetry export is on (docs/audit.md "Telemetry").
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4314",
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_SERVICE_NAME: "metamcp-dev",
      OTEL_RESOURCE_ATTRIBUTES: "workspace.id=1234567890123456,app.name=metamcp-dev",
    };
    expect(readRuntimeEnv(platform, "/app/runtime").telemetry).toBeUndefined();
    expect(readRuntimeEnv({ ...platform, METAMCP_TELEMETRY: "otlp" }, "/app/runtime")).toMatchObject({
      telemetry: {
        protocol: "grpc",
        url: "http://localhost:4314",
        serviceName: "metamcp-dev",
        resourceAttributes: { "workspace.id": "1234567890123456", "app.name": "metamcp-dev" },
        principal: false,
      },
      telemetryOff: undefined,
    });
  });

  it("telemetry to the deployer's own collector: METAMCP_TELEMETRY_ENDPOINT and its protocol, before the platform's", () => {
    const env = readRuntimeEnv(
      {
        ...GOOD,
        METAMCP_TELEMETRY: "otlp",
        METAMCP_TELEMETRY_ENDPOINT: "https://otel.example.com/v1/traces",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4314",
        OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      },
      "/app/runtime",
    );
    expect(env.telemetry).toMatchObject({
      protocol: "http/protobuf",
      url: "https://otel.example.com/v1/traces",
    });
    expect(
      readRuntimeEnv(
        {
          ...GOOD,
          METAMCP_TELEMETRY: "otlp",
          METAMCP_TELEMETRY_ENDPOINT: "http://collector:4317",
          METAMCP_TELEMETRY_PROTOCOL: "grpc",
        },
        "/app/runtime",
      ).telemetry,
    ).toMatchObject({ protocol: "grpc", url: "http://collector:4317" });
  });

  it("telemetry over OTLP/HTTP: the traces path is appended to the base endpoint, not to the signal's own", () => {
    const env = (extra: Record<string, string>) =>
      readRuntimeEnv({ ...GOOD, METAMCP_TELEMETRY: "otlp", ...extra }, "/app/runtime").telemetry;
    expect(env({ OTEL_EXPORTER_OTLP_ENDPOINT: "https://otel.example.com/" })).toMatchObject({
      protocol: "http/protobuf",
      url: "https://otel.example.com/v1/traces",
      serviceName: "metamcp-dev", // DATABRICKS_APP_NAME
    });
    expect(
      env({
        OTEL_EXPORTER_OTLP_ENDPOINT: "https://otel.example.com",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://traces.example.com/in",
        OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json",
        METAMCP_TELEMETRY_PRINCIPAL: "on",
      }),
    ).toMatchObject({ protocol: "http/json", url: "https://traces.example.com/in", principal: true });
  });

  it("telemetry asked for without a destination: the app starts without it and says why", () => {
    const env = readRuntimeEnv({ ...GOOD, METAMCP_TELEMETRY: "otlp" }, "/app/runtime");
    expect(env.telemetry).toBeUndefined();
    expect(env.telemetryOff).toMatch(
      /no telemetry destination: none of METAMCP_TELEMETRY_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT/,
    );
  });

  it("telemetry settings are checked; an OTLP header's value is a secret", () => {
    const p = problemsOf({
      METAMCP_TELEMETRY: "on",
      METAMCP_TELEMETRY_PRINCIPAL: "yes",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http",
      OTEL_EXPORTER_OTLP_ENDPOINT: "https://user:pw@otel.example.com",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "localhost:4318",
      METAMCP_TELEMETRY_PROTOCOL: "thrift",
    });
    expect(p).toContain(
      'METAMCP_TELEMETRY_PROTOCOL="thrift" is not valid: one of grpc, http/protobuf, http/json',
    );
    expect(p).toContain('METAMCP_TELEMETRY="on" is not valid: one of off, otlp');
    expect(p).toContain('METAMCP_TELEMETRY_PRINCIPAL="yes" is not valid: one of off, on');
    expect(p).toContain(
      'OTEL_EXPORTER_OTLP_PROTOCOL="http" is not valid: one of grpc, http/protobuf, http/json',
    );
    expect(p).toMatch(
      /OTEL_EXPORTER_OTLP_ENDPOINT=.* is not valid: an http:\/\/ or https:\/\/ URL of an OTLP collector, without credentials/,
    );
    expect(p).toContain('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="localhost:4318" is not valid');
    readRuntimeEnv(
      { ...GOOD, OTEL_EXPORTER_OTLP_HEADERS: "Authorization=Bearer%20tok-abcdef0123456789,x-tenant=a" },
      "/app/runtime",
    );
    expect(maskSecrets("sent Bearer tok-abcdef0123456789")).toBe("sent ****");
  });

  it("Databricks tools: on, app identity for managers by default; both settings checked", () => {
    expect(readRuntimeEnv(GOOD, "/app/runtime").databricksTools).toEqual({
      enabled: true,
      appIdentity: "managers",
    });
    expect(
      readRuntimeEnv(
        { ...GOOD, METAMCP_DATABRICKS_TOOLS: "off", METAMCP_DATABRICKS_APP_IDENTITY: "everyone" },
        "/app/runtime",
      ).databricksTools,
    ).toEqual({ enabled: false, appIdentity: "everyone" });
    const p = problemsOf({ METAMCP_DATABRICKS_TOOLS: "yes", METAMCP_DATABRICKS_APP_IDENTITY: "admins" });
    expect(p).toContain('METAMCP_DATABRICKS_TOOLS="yes" is not valid: one of on, off');
    expect(p).toContain(
      'METAMCP_DATABRICKS_APP_IDENTITY="admins" is not valid: one of managers, everyone, off',
    );
  });

  it("checks the provisioned variables when that kind is chosen", () => {
    expect(problemsOf({ LAKEBASE_KIND: "provisioned" })).toMatch(/LAKEBASE_INSTANCE_NAME is not set/);
    expect(problemsOf({ LAKEBASE_KIND: "provisioned", LAKEBASE_INSTANCE_NAME: "My_DB" })).toMatch(
      /LAKEBASE_INSTANCE_NAME="My_DB" is not valid: an instance name/,
    );
  });

  it("cuts a huge value in its message and lists every problem at once", () => {
    const message = problemsOf({ PGPORT: "9".repeat(100_000), LOG_LEVEL: "loud", PGHOST: undefined });
    expect(message.length).toBeLessThan(2000);
    expect(message).toMatch(/PGPORT="9{80}…" is not valid/);
    expect(message).toMatch(/LOG_LEVEL/);
    expect(message).toMatch(/PGHOST is not set/);
  });

  it("docs/runtime.md has a row for every variable the runtime reads", () => {
    const doc = readFileSync(path.join(PROJECT_ROOT, "docs/runtime.md"), "utf8");
    const table = doc.slice(doc.indexOf("## Environment"), doc.indexOf("## Sequence"));
    for (const name of RUNTIME_VARIABLES) expect(table, name).toContain(`\`${name}\``);
  });
});

describe("BETTER_AUTH_SECRET placeholders", () => {
  it.each([
    "{{secrets/metamcp/better-auth-secret}}",
    "<secret>",
    "<your-better-auth-secret-goes-here>",
    "$BETTER_AUTH_SECRET",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal an unresolved valueFrom leaves
    "${BETTER_AUTH_SECRET}",
    "$(openssl rand -base64 32)",
    "replace-me-with-a-real-secret",
    "changeme",
    "CHANGE ME PLEASE 1234567890",
    "your-secret-here",
    "your_super_secret_key_here_123",
    "your-super-secret-key-change-this-in-production",
    "placeholder-placeholder",
    "xxxxxxxxxxxxxxxxxxxxxxxx",
    "****************",
    "secret",
    "   ",
  ])("%j is refused, exit 2, saying how to set it and never echoing it", (value) => {
    const message = problemsOf({ BETTER_AUTH_SECRET: value });
    expect(message).toMatch(/BETTER_AUTH_SECRET is (a placeholder|only whitespace)/);
    expect(message).toContain("databricks secrets put-secret");
    expect(message).not.toContain(JSON.stringify(value));
    if (value.trim().length > 8) expect(message).not.toContain(value);
  });

  it("random secrets as generators make them are never refused as placeholders", () => {
    // Before: 1 draw in about 750 of `openssl rand -base64 32` held "tbd" or "todo" inside and was refused,
    // so a deploy (and a CI run) failed at random.
    const refused: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const bytes = randomBytes(32);
      for (const value of [bytes.toString("base64"), bytes.toString("base64url"), bytes.toString("hex")])
        if (authSecretProblem(value) !== undefined) refused.push(value);
    }
    expect(refused.length, "random secrets refused (values not shown)").toBe(0);
  });

  it.each([
    "TODO-TODO-TODO-TODO",
    "tbd tbd tbd tbd tbd",
    "insert/your/own",
    "fixme_fixme_fixme",
    "dummy-1234567890abc",
  ])("short placeholder words still count when they are whole words: %j", (value) => {
    expect(authSecretProblem(value)).toMatch(/placeholder/);
  });

  it("a short secret's message is readable and does not print the value; a real one is masked", () => {
    const message = problemsOf({ BETTER_AUTH_SECRET: "Kx9#short" });
    expect(message).toContain("BETTER_AUTH_SECRET is shorter than 16 characters (value not shown)");
    expect(message).not.toContain("Kx9#short");
    expect(message).not.toContain("****");
    // A refused value is not registered for masking: unrelated text containing it stays as it is.
    expect(maskSecrets("password short-lived")).toBe("password short-lived");
    readRuntimeEnv(GOOD, "/x");
    expect(maskSecrets(`s=${GOOD.BETTER_AUTH_SECRET}`)).toBe("s=****");
    expect(authSecretProblem(GOOD.BETTER_AUTH_SECRET!)).toBeUndefined();
  });

  it("a refused short secret is not registered for masking, so the message stays readable", () => {
    // Before: "short" was registered and the logged message read "is ****er than 16 characters".
    expect(maskSecrets(problemsOf({ BETTER_AUTH_SECRET: "short" }))).toMatch(
      /BETTER_AUTH_SECRET is shorter than 16 characters/,
    );
  });
});

describe("the runtime bundle refuses bad input before it starts anything", () => {
  let treeDir: string;
  let blocker: Server | undefined;
  const procs: ChildProcess[] = [];

  beforeAll(() => {
    treeDir = createFakeAppTree(mkdtempSync(path.join(os.tmpdir(), "mmdb-envtree-")));
  });
  afterAll(async () => {
    for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
    await new Promise<void>((r) => (blocker ? blocker.close(() => r()) : r()));
    rmSync(treeDir, { recursive: true, force: true });
  });

  function run(env: Record<string, string | undefined>): Promise<{ code: number | null; out: string }> {
    const full: Record<string, string> = { PATH: process.env.PATH ?? "" };
    for (const [k, v] of Object.entries(env)) if (v !== undefined) full[k] = v;
    const child = spawn(process.execPath, [path.join(treeDir, "runtime/start.mjs")], {
      cwd: treeDir,
      env: full,
      stdio: ["ignore", "pipe", "pipe"],
    });
    procs.push(child);
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    // The runtime logs JSON lines off a TTY: read their messages.
    const messages = () =>
      out
        .split("\n")
        .map((l) => {
          try {
            return (JSON.parse(l) as { msg: string }).msg;
          } catch {
            return l;
          }
        })
        .join("\n");
    return new Promise((resolve) => child.once("close", (code) => resolve({ code, out: messages() })));
  }

  it.each([
    ["PGPORT=abc", { PGPORT: "abc" }, /PGPORT="abc" is not valid/],
    [
      "METAMCP_DB_WAIT_SECONDS=abc",
      { METAMCP_DB_WAIT_SECONDS: "abc" },
      /METAMCP_DB_WAIT_SECONDS="abc" is not valid/,
    ],
    [
      "DATABRICKS_APP_PORT=99999",
      { DATABRICKS_APP_PORT: "99999" },
      /DATABRICKS_APP_PORT="99999" is not valid/,
    ],
    [
      "a placeholder secret",
      { BETTER_AUTH_SECRET: "{{secrets/scope/key}}" },
      /BETTER_AUTH_SECRET is a placeholder/,
    ],
    ["a short secret", { BETTER_AUTH_SECRET: "short" }, /BETTER_AUTH_SECRET is shorter than 16 characters/],
  ])("%s: exit 2, one line naming the variable, no stack", async (_what, overrides, message) => {
    const r = await run({ ...GOOD, ...overrides });
    expect(r.code).toBe(2);
    expect(r.out).toMatch(message);
    expect(r.out).not.toMatch(/\n\s+at /);
  });

  it("a port already in use: exit 2 naming the port and the variable; the listen host is honoured", async () => {
    blocker = createServer();
    const port = await freePort();
    await new Promise<void>((r) => blocker!.listen(port, "127.0.0.1", () => r()));
    const r = await run({
      ...GOOD,
      DATABRICKS_APP_PORT: String(port),
      METAMCP_LISTEN_HOST: "127.0.0.1",
      METAMCP_ROOT: path.join(treeDir, "metamcp"),
    });
    expect(r.code).toBe(2);
    expect(r.out).toContain(
      `cannot listen on 127.0.0.1:${port}: another process already listens on 127.0.0.1:${port} (DATABRICKS_APP_PORT)`,
    );
    expect(r.out).not.toMatch(/\n\s+at /);
  });

  it("an app tree without MetaMCP built: exit 2 saying to build", async () => {
    const r = await run({ ...GOOD, METAMCP_ROOT: path.join(treeDir, "nothing-here") });
    expect(r.code).toBe(2);
    expect(r.out).toMatch(
      /the app tree is incomplete: .*nothing-here.* is missing → build it with `make build`/,
    );
  });
});

describe("credential folders left behind by earlier runs", () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "mmdb-sweep-"));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  async function deadPid(): Promise<number> {
    const p = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
    await new Promise((r) => p.once("exit", r));
    return p.pid!;
  }

  function credDir(
    name: string,
    owner: unknown,
    files: Record<string, string> = { pgpassword: "tok" },
  ): string {
    const dir = path.join(tmp, `${CREDENTIAL_DIR_PREFIX}${name}`);
    mkdirSync(dir);
    if (owner !== undefined) writeFileSync(path.join(dir, "owner"), JSON.stringify(owner));
    for (const [f, v] of Object.entries(files)) writeFileSync(path.join(dir, f), v);
    return dir;
  }

  it("removes only ours whose process is gone; keeps live ones, foreign ones and anything unsure", async () => {
    const live = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    try {
      const dead = credDir("dead", { pid: await deadPid() });
      const alive = credDir("alive", { pid: live.pid });
      const noOwner = credDir("noowner", undefined);
      const foreign = credDir("foreign", { pid: await deadPid() }, { pgpassword: "t", "notes.txt": "mine" });
      const garbled = credDir("garbled", undefined, { owner: "not json" });
      const elsewhere = mkdtempSync(path.join(tmp, "target-"));
      const link = path.join(tmp, `${CREDENTIAL_DIR_PREFIX}link`);
      symlinkSync(elsewhere, link);
      const removed = removeLeftoverCredentialDirs(tmp);
      expect(removed).toEqual([dead]);
      for (const kept of [alive, noOwner, foreign, garbled, link, elsewhere])
        expect(existsSync(kept)).toBe(true);
    } finally {
      live.kill("SIGKILL");
    }
  });
});
