import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { DatabricksError, EXIT, isUserError, UserError } from "../errors.js";
import { createLogger, type Logger } from "../log/logger.js";
import { maskSecrets, registerSecret } from "../log/secrets.js";
import { logProgress, runSteps, type Step, type StepProgress } from "../log/steps.js";
import { abandonOnAbort, fetchNotAnswering, retry, waitFor } from "../retry.js";
import { AuditObserver } from "./audit-observer.js";
import { ensureAuditTable } from "./audit-table.js";
import { AuditWriter } from "./audit-writer.js";
import { quietLinesFor } from "./child-log-lines.js";
import { SECRETS_PRELOAD_FILE, splitChildSecrets } from "./child-secrets.js";
import { type ChildSpec, SupervisedChild } from "./children.js";
import { CredentialKeeper, removeLeftoverCredentialDirs } from "./credentials.js";
import {
  clientConfig,
  connectWithRetry,
  type DrizzleMigrator,
  describePgError,
  ensureSchema,
  isConnectionLost,
  loadDrizzleMigrator,
  runMigrations,
  searchPathOption,
} from "./database.js";
import { ToolContexts } from "./databricks-tools/contexts.js";
import { appIdentityServersByOthers, describeAppIdentityServerByOther } from "./databricks-tools/existing.js";
import { type DatabricksTools, startDatabricksTools } from "./databricks-tools/index.js";
import { DatabaseHealth } from "./db-health.js";
import {
  describeEndpointIdentityTable,
  endpointIdentityChildEnv,
  ensureEndpointIdentityTable,
} from "./endpoint-identity.js";
import { type RuntimeEnv, readRuntimeEnv } from "./env.js";
import { seedMcpTimeouts } from "./mcp-timeouts.js";
import { AppPlatformClient } from "./platform-client.js";
import { createRouter } from "./router.js";
import { SessionContinuity } from "./session-continuity.js";
import { ensureSessionTable, SessionStore, storeOnceReady } from "./session-store.js";
import {
  describeStdioServerByOther,
  describeStdioSettings,
  stdioChildEnv,
  stdioServersByOthers,
} from "./stdio-servers.js";
import { fanOut, startTelemetry, type Telemetry } from "./telemetry.js";
import { assertTreeSchema } from "./tree-schema.js";
import {
  applyEmailSignupDefault,
  backendSeparatesSsoSignup,
  describeSignupOutcome,
  emailSignupSetting,
  upstreamChildEnv,
} from "./upstream-settings.js";

/** The platform kills the app 15 s after SIGTERM: everything (drain included) fits in less. */
const SHUTDOWN_BUDGET_MS = 12_000;

/** Why the app port cannot be listened on, in the operator's terms (the variable to change). */
function listenError(err: NodeJS.ErrnoException, host: string, port: number): UserError {
  const where = `${host}:${port}`;
  const why =
    err.code === "EADDRINUSE"
      ? `another process already listens on ${where} (DATABRICKS_APP_PORT)`
      : err.code === "EADDRNOTAVAIL"
        ? `${host} is not an address of this machine (METAMCP_LISTEN_HOST)`
        : err.code === "EACCES"
          ? `this user may not listen on port ${port} (DATABRICKS_APP_PORT; ports below 1024 need privileges)`
          : `${err.message}`;
  return new UserError("app_port_unusable", `cannot listen on ${where}: ${why}`, EXIT.input);
}

function childEnv(
  env: RuntimeEnv,
  appUrl: string,
  passwordFile: string,
  port: number,
): Record<string, string> {
  const base: Record<string, string> = {};
  for (const k of [
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "TZ",
    "NODE_EXTRA_CA_CERTS",
    "DATABRICKS_HOST",
    "DATABRICKS_APP_NAME",
    "DATABRICKS_WORKSPACE_ID",
  ]) {
    const v = process.env[k];
    if (v) base[k] = v;
  }
  const user = encodeURIComponent(env.pg.user);
  return {
    ...base,
    NODE_ENV: "production",
    PORT: String(port),
    // Both children: the backend listens there, Next's middleware asks it there (our port patches).
    METAMCP_BACKEND_PORT: String(env.backendPort),
    APP_URL: appUrl,
    NEXT_PUBLIC_APP_URL: appUrl,
    BETTER_AUTH_SECRET: env.betterAuthSecret,
    // No password in the URL: the patched pool reads the current credential from this file per connection.
    DATABASE_URL: `postgresql://${user}@${env.pg.host}:${env.pg.port}/${encodeURIComponent(env.pg.database)}`,
    METAMCP_PG_PASSWORD_FILE: passwordFile,
    PGHOST: env.pg.host,
    PGPORT: String(env.pg.port),
    PGDATABASE: env.pg.database,
    PGUSER: env.pg.user,
    PGSSLMODE: env.pg.sslmode === "require" ? "no-verify" : env.pg.sslmode,
    PGAPPNAME: env.pg.appName,
    PGOPTIONS: searchPathOption(env.schema),
    // Settings newer MetaMCP reads (trusted origins, bootstrap off unless opted in): upstream-settings.ts.
    ...upstreamChildEnv(appUrl, process.env),
    ...endpointIdentityChildEnv(process.env),
  };
}

/**
 * A MetaMCP process started as `node --import <preload> <args>`: its secrets (child-secrets.ts
 * CHILD_SECRET_NAMES) reach it on a pipe, so its initial environment (/proc/<pid>/environ, readable by every
 * process the app runs) holds none of them.
 */
function metamcpChild(
  name: string,
  cwd: string,
  args: string[],
  variables: Record<string, string>,
  preload: string,
): ChildSpec {
  const { env, secrets } = splitChildSecrets(variables);
  return { name, command: process.execPath, args, cwd, env, handOver: { preload, secrets } };
}

/**
 * One random secret per start (docs/identity.md): our router stamps it on requests that carry the Apps
 * proxy's identity, and the patched backend trusts those headers only with it. Never logged.
 */
export function newIdentitySecret(): string {
  const secret = randomBytes(32).toString("hex");
  registerSecret(secret);
  return secret;
}

/** The app.yaml command: Lakebase credential, schema, migrations, then MetaMCP on the app's one port. */
export async function runApp(runtimeDir: string): Promise<number> {
  const json = !process.stderr.isTTY;
  const log = createLogger({ json, tag: "start" });
  let env: RuntimeEnv;
  try {
    env = readRuntimeEnv(process.env, runtimeDir);
    // Before any credential, connection or schema: a tree prepared for another schema cannot run here.
    assertTreeSchema(path.resolve(runtimeDir, ".."), env.schema, "app.yaml's env, then deploy again");
  } catch (err) {
    const hint = isUserError(err) && err.hint ? ` → ${err.hint}` : "";
    log.error(maskSecrets(`${(err as Error).message}${hint}`));
    return isUserError(err) ? err.exitCode : EXIT.bug;
  }
  // A stop (SIGTERM/SIGINT) may come at any moment of startup: every wait below ends on it, and
  // nothing is launched once it came.
  const stop = new AbortController();
  const platform = new AppPlatformClient(env.host, env.clientId, env.clientSecret, 15_000, stop.signal);
  for (const dir of removeLeftoverCredentialDirs())
    log.info(`removed a credential folder an earlier run left behind: ${dir}`);
  const keeper = new CredentialKeeper(
    () =>
      env.lakebase.kind === "autoscaling"
        ? platform.postgresCredential(env.lakebase.endpoint!)
        : platform.databaseCredential(env.lakebase.instanceName!),
    createLogger({ json, tag: "credential" }),
  );
  const children: SupervisedChild[] = [];
  // Every exit we do not choose (process.exit from the hard stop, an uncaught exception) still takes the
  // children down and removes the file holding the database credential: 'exit' handlers run on all of them.
  process.on("exit", () => {
    for (const c of children) c.killNow();
    keeper.removeFiles();
  });
  process.on("uncaughtException", (err) => {
    log.error(
      `internal error, stopping (a bug: please report it with this line): ${maskSecrets(String(err?.stack ?? err))}`,
    );
    process.exit(EXIT.bug);
  });
  process.on("unhandledRejection", (err) => {
    log.error(
      `internal error, stopping (a bug: please report it with this line): ${maskSecrets(String((err as Error)?.stack ?? err))}`,
    );
    process.exit(EXIT.bug);
  });

  let publicUrl: string | undefined;
  let health: DatabaseHealth | undefined;
  let tools: DatabricksTools | undefined;
  const identitySecret = newIdentitySecret();
  // The observer is in the router from the start; rows reach the writer once the database is ready (the
  // router answers 503 until then, so none is lost in between), and the telemetry once its module is loaded.
  // Telemetry with the audit off still needs the observer's rows (never with arguments then).
  let auditWriter: AuditWriter | undefined;
  let telemetry: Telemetry | undefined;
  const audit =
    env.audit.enabled || env.telemetry
      ? new AuditObserver({
          // With telemetry off, the writer alone, as before.
          sink: env.telemetry
            ? fanOut([() => auditWriter, () => telemetry])
            : { record: (row) => auditWriter?.record(row) },
          arguments: env.audit.enabled ? env.audit.arguments : "off",
        })
      : undefined;
  // MCP sessions outlive MetaMCP's backend process and move between instances (docs/scaling.md).
  let sessionStore: SessionStore | undefined;
  let backendChild: SupervisedChild | undefined;
  const continuity = new SessionContinuity({
    store: storeOnceReady(() => sessionStore),
    backendPort: env.backendPort,
    generation: () => backendChild?.generation ?? 0,
    identitySecret,
    warn: (message) => log.warn(message),
  });
  // Per-person Databricks servers: the router holds each request's token, the tools gateway swaps its handle.
  const toolContexts = new ToolContexts();
  const router = createRouter({
    toolContexts,
    backendPort: env.backendPort,
    frontendPort: env.frontendPort,
    publicUrl: () => publicUrl,
    healthProblem: async () => await health?.problem(),
    identitySecret,
    warn: (message) => log.warn(message),
    info: (message) => log.info(message),
    trustedProxyAddresses: env.trustedProxyAddresses,
    sessionIdleMs: env.sessionIdleMs,
    defaultEndpoint: env.defaultEndpoint,
    managers: env.appManagers,
    emailSignup: emailSignupSetting(process.env),
    audit,
    auditRead: env.audit.enabled
      ? (filters) => auditWriter?.read(filters) ?? Promise.reject(new Error("the database is not ready yet"))
      : undefined,
    continuity,
  });
  let shuttingDown = false;
  let resolveExit: (code: number) => void = () => {};
  const exit = new Promise<number>((r) => {
    resolveExit = r;
  });

  const shutdown = async (reason: string, code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    for (const c of children) c.markStopping();
    stop.abort();
    const t0 = Date.now();
    (code === 0 ? log.info : log.error)(`shutting down: ${reason}`);
    const hardStop = setTimeout(() => {
      log.error(`could not stop within ${SHUTDOWN_BUDGET_MS / 1000} s: killing what is left`);
      process.exit(code || EXIT.bug);
    }, SHUTDOWN_BUDGET_MS).unref();
    if (router.server.listening) await router.close(8_000).catch(() => {});
    await Promise.all([auditWriter?.close(1_500), telemetry?.close(1_500)]);
    continuity.close();
    await sessionStore?.close();
    await Promise.all(children.map((c) => c.stop(3_000)));
    await tools?.stop();
    keeper.stop();
    clearTimeout(hardStop);
    log.info(`stopped in ${Date.now() - t0} ms`);
    resolveExit(code);
  };
  // SIGHUP too: a closed terminal (under `local`) must not kill us without cleanup (default action).
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(sig, () => void shutdown(sig, 0));
  const stopped = <T>(p: Promise<T>) => abandonOnAbort(p, stop.signal);

  const backendDir = path.join(env.metamcpRoot, "apps/backend");
  const frontendDir = path.join(env.metamcpRoot, "apps/frontend");
  const preload = path.join(runtimeDir, SECRETS_PRELOAD_FILE);
  let migrator: DrizzleMigrator | undefined;
  let appUrl = env.appUrl;
  publicUrl = appUrl;
  const lakebase = env.lakebase;
  if (env.telemetryOff) log.warn(`telemetry off: ${env.telemetryOff}`);
  const telemetryStep: Step<void> = {
    title: "telemetry",
    task: async () => {
      const t = env.telemetry!;
      const telemetryLog = createLogger({ json, tag: "telemetry" });
      try {
        telemetry = await stopped(
          startTelemetry(t, {
            modulePath: path.join(runtimeDir, "telemetry.mjs"),
            warn: (message) => telemetryLog.warn(message),
          }),
        );
        log.info(
          `telemetry on: a span per MCP request over OTLP (${t.protocol}) to ${t.url}, service ${t.serviceName}${t.principal ? ", with who called (enduser.id)" : ""}`,
        );
      } catch (err) {
        if (stop.signal.aborted) throw err;
        // Telemetry is never in the way: without its module the app runs, and says so.
        log.warn(
          `telemetry off: its module could not be loaded: ${maskSecrets(String((err as Error)?.message ?? err))}`,
        );
      }
    },
  };
  // The startup, in order: each title is a progress line of the app's log ("title…", "title: done in N ms").
  const startup: Step<void>[] = [
    {
      title: "app tree",
      task: () => {
        for (const f of [
          preload,
          path.join(backendDir, "dist/index.js"),
          path.join(frontendDir, "server.js"),
          path.join(backendDir, "drizzle"),
        ]) {
          if (!existsSync(f))
            throw new UserError(
              "app_tree_incomplete",
              `the app tree is incomplete: ${f} is missing`,
              EXIT.input,
              "build it with `make build` (and check METAMCP_ROOT if set)",
            );
        }
        // Upstream's own drizzle-orm runs MetaMCP's migrations (database.ts): a tree without it fails here.
        migrator = loadDrizzleMigrator(backendDir);
        log.info(`migrations will run with the backend's drizzle-orm ${migrator.version}`);
      },
    },
    // Off by default, and then not a word of it (a misconfigured one was warned about above).
    ...(env.telemetry ? [telemetryStep] : []),
    {
      // Listen first (503 until ready) so the platform sees the port while MetaMCP starts.
      title: "app port",
      task: async () => {
        await new Promise<void>((resolve, reject) => {
          router.server.once("error", (err) => reject(listenError(err, env.listenHost, env.appPort)));
          router.server.listen(env.appPort, env.listenHost, () => resolve());
        });
        log.info(`listening on ${env.listenHost}:${env.appPort} (503 until MetaMCP is ready)`);
      },
    },
    {
      title: "public URL",
      skip: () => env.appUrl && `METAMCP_APP_URL is ${env.appUrl}`,
      task: async () => {
        const app = await stopped(platform.getApp(env.appName));
        if (!app.url)
          throw new DatabricksError(
            "app_url_unknown",
            `the Apps API returned no url for app ${env.appName}`,
            "redeploy with `make bundle-deploy`, which writes METAMCP_APP_URL into app.yaml",
          );
        appUrl = /^https?:\/\//.test(app.url)
          ? app.url.replace(/\/+$/, "")
          : `https://${app.url.replace(/\/+$/, "")}`;
        publicUrl = appUrl;
        log.info(`APP_URL=${appUrl}`);
      },
    },
    {
      title: "Lakebase instance state",
      skip: () => lakebase.kind !== "provisioned" && "Lakebase Autoscaling has no instance to wait for",
      task: async () => {
        let last: { name: string; state?: string } | undefined;
        await waitFor(
          async () => {
            last = await platform.getDatabaseInstance(lakebase.instanceName!);
            if (!last.state || last.state === "AVAILABLE") return true;
            log.warn(
              `Lakebase instance ${last.name} is ${last.state}: it refuses connections until AVAILABLE; waiting`,
            );
            return undefined;
          },
          {
            what: "the Lakebase instance",
            timeoutMs: 10 * 60_000,
            intervalMs: 5000,
            signal: stop.signal,
            onTimeout: () =>
              new UserError(
                "instance_not_available",
                `Lakebase instance ${last?.name} is ${last?.state}, not AVAILABLE`,
                EXIT.databricks,
                "start the instance (or wait for it), then restart the app",
              ),
          },
        );
      },
    },
    {
      title: `Lakebase credential (${lakebase.kind})`,
      task: async () => {
        await stopped(keeper.start(60_000, stop.signal));
        log.info(`credential valid until ${keeper.expiresAt?.toISOString()}, renewed before expiry`);
      },
    },
    {
      title: "database",
      task: async () => {
        const cfg = clientConfig(env, () => keeper.current());
        await prepareDatabase(env, cfg, backendDir, migrator!, log, stop.signal);
        health = new DatabaseHealth(cfg, keeper, createLogger({ json, tag: "health" }));
        if (env.audit.enabled) {
          const auditLog = createLogger({ json, tag: "audit" });
          auditWriter = new AuditWriter({
            connection: cfg,
            schema: env.schema,
            retentionDays: env.audit.days,
            warn: (message) => auditLog.warn(message),
          });
          auditWriter.start();
        }
        sessionStore = new SessionStore({
          connection: cfg,
          schema: env.schema,
          idleMs: env.sessionIdleMs,
          warn: (message) => log.warn(message),
        });
        sessionStore.start();
      },
    },
    {
      // Before the backend: its fetch wrapper needs the gateway's port and secret (docs/databricks-tools.md).
      title: "Databricks tools",
      task: async () => {
        tools = await startDatabricksTools({
          settings: env.databricksTools,
          host: env.host,
          principalId: env.clientId,
          issueToken: () => platform.issueToken(),
          log: createLogger({ json, tag: "databricks-tools" }),
          contexts: toolContexts,
        });
      },
    },
    {
      title: "MetaMCP servers",
      task: async () => {
        const childUrl = appUrl!;
        const backend = new SupervisedChild(
          // Only the backend gets the identity secret: it is what makes X-Forwarded-Email trustworthy there.
          {
            ...metamcpChild(
              "backend",
              backendDir,
              ["dist/index.js"],
              {
                // First, so nothing the allow-list opens replaces what MetaMCP's own setup needs.
                ...stdioChildEnv(process.env),
                ...childEnv(env, childUrl, keeper.passwordFile, env.backendPort),
                METAMCP_IDENTITY_SECRET: identitySecret,
                ...tools!.childEnv,
              },
              preload,
            ),
            // As MetaMCP main's own logger: its per-request lines only when LOG_LEVEL asks (docs/decisions.md).
            quietLines: quietLinesFor(process.env.LOG_LEVEL),
          },
          createLogger({ json, tag: "backend", coalesce: true }),
        );
        backendChild = backend;
        const frontend = new SupervisedChild(
          metamcpChild(
            "frontend",
            frontendDir,
            ["server.js"],
            { ...childEnv(env, childUrl, keeper.passwordFile, env.frontendPort), HOSTNAME: "127.0.0.1" },
            preload,
          ),
          createLogger({ json, tag: "frontend", coalesce: true }),
        );
        // Checked right before launching, in the same tick: a stop that came during any step before
        // launches nothing (shutdown stops exactly the children in this list).
        stop.signal.throwIfAborted();
        children.push(backend, frontend);
        const onFatal = (reason: string) => void shutdown(reason, EXIT.bug);
        backend.start(onFatal);
        frontend.start(onFatal);
        await Promise.all([
          waitHttp(`http://127.0.0.1:${env.backendPort}/health`, (s) => s === 200, stop.signal),
          waitHttp(`http://127.0.0.1:${env.frontendPort}/`, (s) => s < 500, stop.signal),
        ]);
      },
    },
  ];

  try {
    await runSteps(startup, undefined, { progress: logProgress(log), signal: stop.signal });
    router.ready = true;
    log.success(`MetaMCP is ready on port ${env.appPort} (${appUrl})`);
  } catch (err) {
    if (!stop.signal.aborted) {
      const message = maskSecrets(err instanceof Error ? err.message : String(err));
      const hint = isUserError(err) && err.hint ? ` → ${err.hint}` : "";
      await shutdown(`${message}${hint}`, isUserError(err) ? err.exitCode : EXIT.bug);
    }
  }
  return await exit;
}

/** Waits (up to 120 s) until `url` answers with a status `isUp` accepts; a stop ends the wait at once. */
async function waitHttp(url: string, isUp: (status: number) => boolean, signal: AbortSignal): Promise<void> {
  const timeoutMs = 120_000;
  await waitFor(
    async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000), redirect: "manual" });
      await res.arrayBuffer().catch(() => {});
      return isUp(res.status) ? true : undefined;
    },
    {
      what: url,
      timeoutMs,
      intervalMs: 100,
      signal,
      transient: fetchNotAnswering,
      onTimeout: () => new Error(`${url} did not answer within ${timeoutMs / 1000} s`),
    },
  );
}

/**
 * Connect, schema, migrations, tool timeouts: all on one connection of ours. A database that goes away
 * in the middle (a restart, a failover) is reconnected and the work redone (each part is idempotent)
 * until METAMCP_DB_WAIT_SECONDS has passed; then it is a Databricks-side failure (exit 4).
 */
async function prepareDatabase(
  env: RuntimeEnv,
  cfg: ReturnType<typeof clientConfig>,
  backendDir: string,
  migrator: DrizzleMigrator,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  const until = Date.now() + env.dbWaitMs;
  const stopped = <T>(p: Promise<T>) => abandonOnAbort(p, signal);
  // The step under way, for the message when the connection is lost ("during migrations").
  let phase = "connect";
  const logged = logProgress(log);
  const progress: StepProgress = {
    ...logged,
    started: (title) => {
      phase = title;
      logged.started(title);
    },
  };
  const steps: Step<{ client: pg.Client }>[] = [
    {
      title: `schema ${env.schema}`,
      task: async ({ client }) =>
        log.info(`search_path = ${await stopped(ensureSchema(client, env.schema))}`),
    },
    {
      title: "migrations",
      task: async ({ client }) => {
        const migrationsFolder = path.join(backendDir, "drizzle");
        const m = await stopped(
          runMigrations(client, { migrationsFolder, schema: env.schema, log, migrator }),
        );
        log.info(
          m.applied > 0
            ? `applied ${m.applied} migration(s), ${m.total} in total`
            : `up to date (${m.total} migrations)`,
        );
      },
    },
    {
      title: "tool timeouts",
      task: async ({ client }) => {
        const timeouts = await stopped(seedMcpTimeouts(client, env.schema));
        log.info(
          timeouts
            ? `MetaMCP tool-call timeouts: ${Object.entries(timeouts)
                .map(([k, v]) => `${k}=${v} ms`)
                .join(", ")} (the Apps proxy cuts a request at 120 s)`
            : "this MetaMCP release has no config table: its tool-call timeout stays at its default",
        );
      },
    },
    {
      title: "sign-up setting",
      task: async ({ client }) => {
        const setting = emailSignupSetting(process.env);
        const separate = backendSeparatesSsoSignup(backendDir);
        log.info(
          describeSignupOutcome(
            await stopped(applyEmailSignupDefault(client, env.schema, setting, separate)),
          ),
        );
      },
    },
    {
      title: "endpoint identity table",
      task: async ({ client }) =>
        log.info(
          describeEndpointIdentityTable(
            await stopped(ensureEndpointIdentityTable(client, env.schema)),
            env.schema,
          ),
        ),
    },
    {
      title: "audit table",
      skip: () => !env.audit.enabled && "tool-call audit off (METAMCP_AUDIT=off)",
      task: async ({ client }) => {
        const t = await stopped(ensureAuditTable(client, env.schema));
        log.info(
          `tool-call audit on: ${env.schema}.databricks_tool_calls${t.created ? " created" : ""} (arguments ${env.audit.arguments}, kept ${env.audit.days} days)`,
        );
      },
    },
    {
      title: "session table",
      task: async ({ client }) => {
        const st = await stopped(ensureSessionTable(client, env.schema));
        log.info(
          `MCP sessions recorded in ${env.schema}.databricks_mcp_sessions${st.created ? " (created)" : ""}: they outlive restarts and move between instances`,
        );
      },
    },
    {
      title: "STDIO servers",
      task: async ({ client }) => {
        for (const line of describeStdioSettings(env.stdioPolicy, env.appManagers)) log.info(line);
        const byOthers = await stopped(stdioServersByOthers(client, env.schema, env.appManagers));
        for (const s of byOthers ?? []) log.warn(describeStdioServerByOther(s));
        if (env.databricksTools.enabled && env.databricksTools.appIdentity === "managers") {
          const asApp = appIdentityServersByOthers(client, env.schema, env.appManagers, env.host);
          for (const s of (await stopped(asApp)) ?? []) log.warn(describeAppIdentityServerByOther(s));
        }
      },
    },
  ];
  const attempt = async (): Promise<void> => {
    progress.started("connect");
    const t0 = performance.now();
    const client = await stopped(connectWithRetry(cfg, log, Math.max(0, until - Date.now()), signal));
    progress.done("connect", Math.round(performance.now() - t0));
    // A stop ends our connection at once: PostgreSQL then drops its locks (the migration lock included).
    const endOnStop = () => void client.end().catch(() => {});
    signal.addEventListener("abort", endOnStop, { once: true });
    try {
      await runSteps(steps, { client }, { progress, signal });
    } finally {
      signal.removeEventListener("abort", endOnStop);
      await client.end().catch(() => {});
    }
  };
  // Lost mid-way: reconnect after 1 s and redo it all (each part is idempotent) until the deadline.
  const lost = (err: unknown) => !signal.aborted && isConnectionLost(err);
  try {
    await retry(attempt, {
      firstWaitMs: 1000,
      maxWaitMs: 1000,
      deadlineMs: env.dbWaitMs,
      signal,
      retryable: lost,
      onRetry: (err) =>
        log.warn(`lost the database connection during ${phase} (${describePgError(err)}): reconnecting`),
    });
  } catch (err) {
    if (!lost(err)) throw err;
    throw new UserError(
      "database_lost",
      `lost the database connection during ${phase} and could not finish within METAMCP_DB_WAIT_SECONDS (${env.dbWaitMs / 1000} s): ${describePgError(err)}`,
      EXIT.databricks,
      "is the Lakebase database running? (`make app-status`); the app retried until its deadline",
    );
  }
}
