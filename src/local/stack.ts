import { createWriteStream, existsSync } from "node:fs";
import path from "node:path";
import type { Config } from "../config/load.js";
import { UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { spawnAppProcess } from "./app-process.js";
import { type ProxyLimits, startPlatform } from "./platform/index.js";
import {
  databaseOfExistingState,
  freePort,
  provisionLakebaseRole,
  startEmbeddedPostgres,
} from "./postgres.js";
import { cliCommand } from "./printed.js";
import { type LocalPaths, type LocalRunState, loadOrCreateSecrets, writeRunState } from "./state.js";
import { waitFor } from "./wait.js";

export interface LocalStackOptions {
  config: Config;
  paths: LocalPaths;
  credentialTtlSeconds: number;
  /** User OAuth tokens' lifetime (Databricks: 3600 s). */
  userTokenTtlSeconds?: number;
  /** The local Apps proxy's cuts and Authorization forwarding. */
  proxy?: Partial<ProxyLimits>;
  log: Logger;
  /** How long the app may take to become healthy (the platform allows 10 minutes). */
  healthTimeoutMs?: number;
}

export interface LocalStack {
  state: LocalRunState;
  /** Resolves with a reason when a part stops on its own (the app exits, PostgreSQL dies). */
  failed: Promise<string>;
  stop(): Promise<void>;
}

async function assertPortFree(port: number): Promise<void> {
  const { createServer } = await import("node:net");
  await new Promise<void>((resolve, reject) => {
    const srv = createServer();
    srv.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE"
          ? new UserError(
              "port_in_use",
              `port ${port} is already in use`,
              2,
              "pick another with --port N (or LOCAL_PORT)",
            )
          : err,
      ),
    );
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve()));
  });
}

/** The app's command, from the app tree's app.yaml when present, as the platform reads it. */
const APP_COMMAND = ["node", "runtime/start.mjs"];

/**
 * Starts, in order: PostgreSQL (Lakebase-like role), the Databricks stand-in (OIDC, Lakebase credentials,
 * Apps API), the Apps proxy on the user's port, and the app tree's own start command with exactly the
 * environment the platform injects; then waits for /metamcp/health through the proxy.
 * Whatever started is stopped again if a later step fails.
 */
export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  const { config, paths, log } = options;
  const appDir = config.appDir;
  if (!existsSync(path.join(appDir, "runtime/start.mjs"))) {
    throw new UserError(
      "no_app_tree",
      `no built app tree in ${appDir}`,
      2,
      `run \`${cliCommand("build")}\` first (or \`make local\`, which builds)`,
    );
  }
  await assertPortFree(config.local.port);
  const secrets = loadOrCreateSecrets(paths);
  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        log.warn(`while stopping: ${(err as Error).message}`);
      }
    }
  };

  try {
    const t0 = performance.now();
    const pg = await startEmbeddedPostgres({
      dataDir: paths.pgDir,
      persistent: true,
      superPassword: secrets.pgSuperPassword,
      onLog: (line) => log.debug(`[postgres] ${line}`),
    });
    cleanups.push(() => pg.stop());
    const database = await databaseOfExistingState(pg.adminUrl(), {
      wanted: config.lakebase.database,
      schema: config.schema,
    });
    if (database !== config.lakebase.database)
      log.info(
        `postgres: this state's data lives in database ${database} (the earlier default); kept there (\`--fresh\` starts over in ${config.lakebase.database})`,
      );
    await provisionLakebaseRole(pg.adminUrl(), { database, role: secrets.clientId });
    log.info(
      `postgres: ready on port ${pg.port} (${Math.round(performance.now() - t0)} ms), role ${secrets.clientId}: CONNECT, CREATE only`,
    );

    const appPort = await freePort();
    const logFile = createWriteStream(paths.logFile, { flags: "a" });
    cleanups.push(async () => void logFile.end());
    const platform = await startPlatform({
      config: { ...config, lakebase: { ...config.lakebase, database } },
      secrets,
      postgres: pg,
      proxyPort: config.local.port,
      appPort,
      credentialTtlSeconds: options.credentialTtlSeconds,
      userTokenTtlSeconds: options.userTokenTtlSeconds,
      proxy: options.proxy,
      log,
    });
    cleanups.push(() => platform.close());
    log.info(`databricks stand-in: workspace ${platform.workspaceUrl}, app ${platform.appUrl}`);

    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      ...platform.appEnv,
    };
    const app = spawnAppProcess({
      command: APP_COMMAND,
      cwd: appDir,
      env,
      onLine: (_source, line) => {
        logFile.write(`${line}\n`);
        platform.logs.push("APP", line);
        log.debug(`[app] ${line}`);
      },
    });
    cleanups.push(async () => void (await app.stop(15_000)));

    const state: LocalRunState = {
      status: "starting",
      supervisorPid: process.pid,
      pgPid: pg.pid,
      appPid: app.pid,
      ports: { proxy: config.local.port, workspace: platform.workspacePort, app: appPort, postgres: pg.port },
      appUrl: platform.appUrl,
      workspaceUrl: platform.workspaceUrl,
      platform: { userTokenTtlSeconds: options.userTokenTtlSeconds ?? 3600, ...platform.proxyLimits },
      startedAt: new Date().toISOString(),
    };
    writeRunState(paths, state);

    const exited = app.exited.then(
      (e) => `the app exited (code ${e.code ?? "none"}, signal ${e.signal ?? "none"})`,
    );
    let appGone: string | undefined;
    void exited.then((why) => {
      appGone = why;
    });
    await waitFor(
      async () => {
        if (appGone)
          throw new UserError("app_exited", `${appGone} before it became healthy: see ${paths.logFile}`, 1);
        const res = await fetch(`${platform.appUrl}/metamcp/health`, {
          headers: { authorization: `Bearer ${platform.issueUserToken(undefined, 60).token}` },
          redirect: "manual",
          signal: AbortSignal.timeout(5000),
        });
        return res.status === 200 ? true : undefined;
      },
      {
        timeoutMs: options.healthTimeoutMs ?? 10 * 60_000,
        what: "/metamcp/health through the local Apps proxy",
      },
    ).catch((err: unknown) => {
      if (err instanceof UserError) throw err;
      throw new UserError("local_unhealthy", `${(err as Error).message}; see ${paths.logFile}`, 1);
    });
    log.success(`healthy after ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    return {
      state: { ...state, status: "healthy" },
      failed: exited,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
