import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isUserError } from "../errors.js";
import { createLogger, type Logger } from "../log/logger.js";
import { maskSecrets, registerSecret } from "../log/secrets.js";
import { SupervisedChild } from "./children.js";
import { CredentialKeeper } from "./credentials.js";
import { clientConfig, connectWithRetry, ensureSchema, runMigrations, searchPathOption } from "./database.js";
import {
  describeEndpointIdentityTable,
  endpointIdentityChildEnv,
  ensureEndpointIdentityTable,
} from "./endpoint-identity.js";
import { BACKEND_PORT, FRONTEND_PORT, type RuntimeEnv, readRuntimeEnv } from "./env.js";
import { seedMcpTimeouts } from "./mcp-timeouts.js";
import { createRouter } from "./router.js";
import {
  applyEmailSignupDefault,
  backendSeparatesSsoSignup,
  describeSignupOutcome,
  emailSignupSetting,
  upstreamChildEnv,
} from "./upstream-settings.js";
import { WorkspaceClient } from "./workspace-client.js";

const SHUTDOWN_BUDGET_MS = 15_000;

async function step<T>(log: Logger, name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  log.info(`${name}…`);
  const value = await fn();
  log.info(`${name}: done in ${Math.round(performance.now() - t0)} ms`);
  return value;
}

async function waitHttp(
  url: string,
  deadlineMs: number,
  isUp: (status: number) => boolean,
  alive: () => boolean,
): Promise<void> {
  const until = Date.now() + deadlineMs;
  let wait = 25;
  while (Date.now() < until) {
    if (!alive()) throw new Error(`gave up waiting for ${url}: the process exited`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000), redirect: "manual" });
      await res.arrayBuffer().catch(() => {});
      if (isUp(res.status)) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 1.5, 500);
  }
  throw new Error(`${url} did not answer within ${deadlineMs / 1000} s`);
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
  const log = createLogger({ json: !process.stderr.isTTY, tag: "start" });
  let env: RuntimeEnv;
  try {
    env = readRuntimeEnv(process.env, runtimeDir);
  } catch (err) {
    log.error(maskSecrets((err as Error).message));
    return 2;
  }
  const workspace = new WorkspaceClient(env.host, env.clientId, env.clientSecret);
  const keeper = new CredentialKeeper(
    () =>
      env.lakebase.kind === "autoscaling"
        ? workspace.postgresCredential(env.lakebase.endpoint!)
        : workspace.databaseCredential(env.lakebase.instanceName!),
    createLogger({ json: !process.stderr.isTTY, tag: "credential" }),
  );
  const children: SupervisedChild[] = [];
  let publicUrl: string | undefined;
  const identitySecret = newIdentitySecret();
  const router = createRouter({
    backendPort: BACKEND_PORT,
    frontendPort: FRONTEND_PORT,
    publicUrl: () => publicUrl,
    identitySecret,
    warn: (message) => log.warn(message),
  });
  let shuttingDown = false;
  let resolveExit: (code: number) => void = () => {};
  const exit = new Promise<number>((r) => {
    resolveExit = r;
  });

  const shutdown = async (reason: string, code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    const t0 = Date.now();
    (code === 0 ? log.info : log.error)(`shutting down: ${reason}`);
    const hardStop = setTimeout(() => process.exit(code || 1), SHUTDOWN_BUDGET_MS).unref();
    await router.close(8_000).catch(() => {});
    await Promise.all(children.map((c) => c.stop(4_000)));
    keeper.stop();
    clearTimeout(hardStop);
    log.info(`stopped in ${Date.now() - t0} ms`);
    resolveExit(code);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM", 0));
  process.once("SIGINT", () => void shutdown("SIGINT", 0));

  try {
    const backendDir = path.join(env.metamcpRoot, "apps/backend");
    const frontendDir = path.join(env.metamcpRoot, "apps/frontend");
    for (const f of [
      path.join(backendDir, "dist/index.js"),
      path.join(frontendDir, "server.js"),
      path.join(backendDir, "drizzle"),
    ]) {
      if (!existsSync(f))
        throw new Error(`the app tree is incomplete: ${f} is missing (was it built with \`make build\`?)`);
    }
    // Listen first (503 until ready) so the platform sees the port while MetaMCP starts.
    await new Promise<void>((resolve, reject) => {
      router.server.once("error", reject);
      router.server.listen(env.appPort, "0.0.0.0", () => resolve());
    });
    log.info(`listening on port ${env.appPort} (503 until MetaMCP is ready)`);

    const appUrl = await step(log, "public URL", async () => {
      if (env.appUrl) return env.appUrl;
      const app = await workspace.getApp(env.appName);
      if (!app.url) throw new Error(`the Apps API returned no url for app ${env.appName}`);
      return /^https?:\/\//.test(app.url)
        ? app.url.replace(/\/+$/, "")
        : `https://${app.url.replace(/\/+$/, "")}`;
    });
    publicUrl = appUrl;
    log.info(`APP_URL=${appUrl}`);

    if (env.lakebase.kind === "provisioned") {
      await step(log, "Lakebase instance state", async () => {
        const until = Date.now() + 10 * 60_000;
        for (;;) {
          const info = await workspace.getDatabaseInstance(env.lakebase.instanceName!);
          if (!info.state || info.state === "AVAILABLE") return;
          if (Date.now() > until)
            throw new Error(`Lakebase instance ${info.name} is ${info.state}, not AVAILABLE`);
          log.warn(
            `Lakebase instance ${info.name} is ${info.state}: it refuses connections until AVAILABLE; waiting`,
          );
          await new Promise((r) => setTimeout(r, 5000));
        }
      });
    }
    await step(log, `Lakebase credential (${env.lakebase.kind})`, () => keeper.start());
    log.info(`credential valid until ${keeper.expiresAt?.toISOString()}, renewed before expiry`);

    const cfg = clientConfig(env, () => keeper.current());
    const client = await step(log, "connect", () => connectWithRetry(cfg, log, env.dbWaitMs));
    try {
      const searchPath = await step(log, `schema ${env.schema}`, () => ensureSchema(client, env.schema));
      log.info(`search_path = ${searchPath}`);
      const m = await step(log, "migrations", () =>
        runMigrations(client, {
          migrationsFolder: path.join(backendDir, "drizzle"),
          schema: env.schema,
          log,
        }),
      );
      log.info(
        m.applied > 0
          ? `applied ${m.applied} migration(s), ${m.total} in total`
          : `up to date (${m.total} migrations)`,
      );
      const timeouts = await seedMcpTimeouts(client, env.schema);
      log.info(
        timeouts
          ? `MetaMCP tool-call timeouts: ${Object.entries(timeouts)
              .map(([k, v]) => `${k}=${v} ms`)
              .join(", ")} (the Apps proxy cuts a request at 120 s)`
          : "this MetaMCP release has no config table: its tool-call timeout stays at its default",
      );
      const signup = await applyEmailSignupDefault(
        client,
        env.schema,
        emailSignupSetting(process.env),
        backendSeparatesSsoSignup(backendDir),
      );
      log.info(describeSignupOutcome(signup));
      log.info(
        describeEndpointIdentityTable(await ensureEndpointIdentityTable(client, env.schema), env.schema),
      );
    } finally {
      await client.end().catch(() => {});
    }

    const onFatal = (reason: string) => void shutdown(reason, 1);
    const backend = new SupervisedChild(
      {
        name: "backend",
        command: process.execPath,
        args: ["dist/index.js"],
        cwd: backendDir,
        // Only the backend gets the identity secret: it is what makes X-Forwarded-Email trustworthy there.
        env: {
          ...childEnv(env, appUrl, keeper.passwordFile, BACKEND_PORT),
          METAMCP_IDENTITY_SECRET: identitySecret,
        },
      },
      createLogger({ json: !process.stderr.isTTY, tag: "backend" }),
    );
    const frontend = new SupervisedChild(
      {
        name: "frontend",
        command: process.execPath,
        args: ["server.js"],
        cwd: frontendDir,
        env: { ...childEnv(env, appUrl, keeper.passwordFile, FRONTEND_PORT), HOSTNAME: "127.0.0.1" },
      },
      createLogger({ json: !process.stderr.isTTY, tag: "frontend" }),
    );
    children.push(backend, frontend);
    await step(log, "MetaMCP servers", async () => {
      backend.start(onFatal);
      frontend.start(onFatal);
      await Promise.all([
        waitHttp(
          `http://127.0.0.1:${BACKEND_PORT}/health`,
          120_000,
          (s) => s === 200,
          () => !shuttingDown,
        ),
        waitHttp(
          `http://127.0.0.1:${FRONTEND_PORT}/`,
          120_000,
          (s) => s < 500,
          () => !shuttingDown,
        ),
      ]);
    });
    router.ready = true;
    log.success(`MetaMCP is ready on port ${env.appPort} (${appUrl})`);
  } catch (err) {
    const message = maskSecrets(err instanceof Error ? err.message : String(err));
    const hint = isUserError(err) && err.hint ? ` → ${err.hint}` : "";
    await shutdown(`${message}${hint}`, isUserError(err) ? err.exitCode : 1);
  }
  return await exit;
}

// Entry point of the bundled runtime (runtime/start.mjs in the app tree).
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const code = await runApp(path.dirname(fileURLToPath(import.meta.url)));
  process.exit(code);
}
