import { createWriteStream, existsSync } from "node:fs";
import path from "node:path";
import type { Config } from "../config/load.js";
import { APP_COMMAND } from "../databricks/render.js";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { MASK, maskSecrets } from "../log/secrets.js";
import { fetchNotAnswering, waitFor } from "../retry.js";
import { assertTreeSchema } from "../runtime/tree-schema.js";
import { type AppInstanceSpec, AppInstances, type InstanceExit, instancesRefusal } from "./app-instances.js";
import { assertDataDirIsOurs, leftoverDataError, recordDataOwner } from "./data-owner.js";
import { isNoSpaceError, isNoSpaceLine, noSpaceProblem } from "./disk-space.js";
import type { InstanceRouting } from "./platform/apps-proxy-routing.js";
import { type ManagedMcpSettings, type ProxyLimits, startPlatform } from "./platform/index.js";
import {
  assertDataDirVersion,
  databaseOfExistingState,
  freePort,
  provisionLakebaseRole,
  startEmbeddedPostgres,
} from "./postgres.js";
import { cliCommand } from "./printed.js";
import {
  pickWorkspacePort,
  readStandInState,
  standInStateFile,
  writeStandInState,
} from "./stand-in-state.js";
import {
  type LocalPaths,
  type LocalRunState,
  loadOrCreateSecrets,
  openLogForAppend,
  writeRunState,
} from "./state.js";

export interface LocalStackOptions {
  config: Config;
  paths: LocalPaths;
  credentialTtlSeconds: number;
  /** User OAuth tokens' lifetime (Databricks: 3600 s). */
  userTokenTtlSeconds?: number;
  /** The local Apps proxy's cuts and Authorization forwarding. */
  proxy?: Partial<ProxyLimits>;
  /** The app's user authorization scopes (`--user-scopes`): the proxy then forwards each person's token. */
  userApiScopes?: string[];
  /** The stand-in workspace's managed MCP servers (offered, Genie's delay). */
  managedMcp?: Partial<ManagedMcpSettings>;
  log: Logger;
  /** How long the app may take to become healthy (the platform allows 10 minutes). */
  healthTimeoutMs?: number;
  /** Aborted (Ctrl-C, SIGTERM, `local down`) while starting: whatever started is stopped again. */
  signal?: AbortSignal;
  /** How many instances of the app (`--instances`, 1–5; docs/scaling.md), and how the proxy spreads people. */
  instances?: number;
  routing?: InstanceRouting;
}

/** Stopped on request (a signal) before the app was healthy. */
export class StartInterrupted extends UserError {
  constructor(why: string) {
    super("local_interrupted", `stopped before the app was healthy (${why})`, EXIT.notRunning);
  }
}

export interface LocalStack {
  state: LocalRunState;
  /** Resolves with a reason when a part stops on its own (the app exits, PostgreSQL dies). */
  failed: Promise<string>;
  stop(): Promise<void>;
  /** Replaces the app's instances one at a time (`local restart --rolling`); the state after it. */
  rollingRestart(): Promise<LocalRunState>;
}

/**
 * MetaMCP's own ports inside the app (upstream fixes them: frontend 12008, backend 12009). The runtime's
 * METAMCP_FRONTEND_PORT / METAMCP_BACKEND_PORT move them (docs/runtime.md: for trees built for other
 * ports, as the test suite's); set here, they are checked and passed to the app.
 */
export const METAMCP_FIXED_PORTS = [
  { variable: "METAMCP_FRONTEND_PORT", default: 12008, what: "MetaMCP's frontend inside the app" },
  { variable: "METAMCP_BACKEND_PORT", default: 12009, what: "MetaMCP's backend inside the app" },
].map((p) => ({ ...p, port: Number(process.env[p.variable] || p.default), given: process.env[p.variable] }));

function portError(port: number, what: string, err: NodeJS.ErrnoException, hint: string): Error {
  if (err.code === "EADDRINUSE")
    return new UserError(
      "port_in_use",
      `port ${port} (${what}) is already in use by another program`,
      EXIT.input,
      hint,
    );
  if (err.code === "EACCES")
    return new UserError(
      "port_not_allowed",
      `port ${port} (${what}) needs privileges this user does not have (ports below 1024)`,
      EXIT.input,
      hint,
    );
  return err;
}

async function assertPortFree(port: number, what: string, hint: string): Promise<void> {
  const { createServer } = await import("node:net");
  await new Promise<void>((resolve, reject) => {
    const srv = createServer();
    srv.once("error", (err: NodeJS.ErrnoException) => reject(portError(port, what, err, hint)));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve()));
  });
}

const PROXY_PORT_HINT =
  "pick another with --port N or LOCAL_PORT=N (1-65535), or stop the program that holds it";

/** The stand-in's own token shapes (user tokens, database credentials), masked in what we print. */
function maskLocalTokens(line: string): string {
  return maskSecrets(line).replace(/\b(dapi-local-[0-9a-f]{8,}|lbc-[\w-]{8,})/g, MASK);
}

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
      EXIT.input,
      `run \`${cliCommand("build")}\` first (or \`make local\`, which builds)`,
    );
  }
  // Before PostgreSQL or anything in it: a tree prepared for another schema would fail its migrations.
  assertTreeSchema(
    appDir,
    config.schema,
    "in .env or the environment; or let `local up` build, without --no-build",
  );
  const refusal = (options.instances ?? 1) > 1 ? instancesRefusal(appDir) : undefined;
  if (refusal)
    throw new UserError(
      "instances_need_ports",
      `--instances ${options.instances}: ${refusal}, so a second instance cannot run on this machine`,
      EXIT.input,
      `prepare and build again (\`${cliCommand("prepare")}\`, \`${cliCommand("build")}\`) with MetaMCP v2.0.6 or later; or rehearse several instances on Databricks (APP_MIN_INSTANCES / APP_MAX_INSTANCES); docs/scaling.md`,
    );
  const signal = options.signal;
  const interrupted = () => {
    if (signal?.aborted) throw new StartInterrupted(String(signal.reason ?? "aborted"));
  };
  await assertPortFree(config.local.port, "the local Apps proxy", PROXY_PORT_HINT);
  for (const p of METAMCP_FIXED_PORTS)
    await assertPortFree(
      p.port,
      p.what,
      `stop what holds it: another MetaMCP, another \`make local\` (\`${cliCommand("local down")}\` in its folder), or a leftover of one (see \`ss -ltnp 'sport = :${p.port}'\`)`,
    );
  const secretsWereNew = !existsSync(paths.secretsFile);
  const secrets = loadOrCreateSecrets(paths);
  // Before PostgreSQL starts: data another state's secrets made is refused (and kept), not met with a
  // "password authentication failed" from PostgreSQL.
  // Another PostgreSQL's data first: restoring secrets would not open it.
  if (existsSync(path.join(paths.pgDir, "PG_VERSION"))) assertDataDirVersion(paths.pgDir);
  assertDataDirIsOurs(paths, secrets, secretsWereNew);
  const cleanups: (() => Promise<void>)[] = [];
  let stopping = false;
  const stopAll = async () => {
    stopping = true;
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        log.warn(`while stopping: ${(err as Error).message}`);
      }
    }
  };

  // A full disk: PostgreSQL says it (ENOSPC in its log) and stops; our own writes fail. Its first sign.
  let noSpaceSeen: string | undefined;
  const noSpaceReason = (what: string) =>
    `${noSpaceProblem(paths) ?? `no space left on ${paths.root}${noSpaceSeen ? ` (${noSpaceSeen})` : ""}`}: ${what}`;
  try {
    const t0 = performance.now();
    const pg = await startEmbeddedPostgres({
      // Not the proxy's port: it is free now but ours only once the platform listens on it.
      port: await freePort("127.0.0.1", [config.local.port]),
      dataDir: paths.pgDir,
      persistent: true,
      superPassword: secrets.pgSuperPassword,
      onLog: (line) => {
        if (!noSpaceSeen && isNoSpaceLine(line))
          noSpaceSeen = `PostgreSQL: ${line.split("\n").find(isNoSpaceLine)?.trim()}`;
        log.debug(`[postgres] ${line}`);
      },
      callerHandlesSignals: true,
    });
    // PostgreSQL going away while we run it (not asked to): everything stops, with why.
    const pgGone = (pg.exited ?? new Promise<string>(() => {})).then((last) => {
      if (stopping) return new Promise<string>(() => {});
      return noSpaceSeen || noSpaceProblem(paths)
        ? noSpaceReason(`PostgreSQL stopped (${last})`)
        : `PostgreSQL exited unexpectedly (${last})`;
    });
    cleanups.push(() => pg.stop());
    interrupted();
    const database = await databaseOfExistingState(pg.adminUrl(), {
      wanted: config.lakebase.database,
      schema: config.schema,
    }).catch((err: { code?: string }) => {
      // Data from before the owner record, made with other secrets: PostgreSQL says so at our first login.
      if (err?.code === "28P01")
        throw leftoverDataError(paths, "PostgreSQL refused this state dir's superuser password for it");
      throw err;
    });
    recordDataOwner(paths, secrets);
    if (database !== config.lakebase.database)
      log.info(
        `postgres: this state's data lives in database ${database} (the earlier default); kept there (\`--fresh\` starts over in ${config.lakebase.database})`,
      );
    await provisionLakebaseRole(pg.adminUrl(), { database, role: secrets.clientId });
    log.info(
      `postgres: ready on port ${pg.port} (${Math.round(performance.now() - t0)} ms), role ${secrets.clientId}: CONNECT, CREATE only`,
    );

    const appPort = await freePort("127.0.0.1", [config.local.port, pg.port]);
    const standInFile = standInStateFile(paths.root);
    const kept = readStandInState(standInFile);
    const workspacePort = await pickWorkspacePort(
      kept.workspacePort,
      [config.local.port, pg.port, appPort],
      log,
    );
    writeStandInState(standInFile, { ...kept, workspacePort });
    const logFile = createWriteStream(paths.logFile, { fd: openLogForAppend(paths) });
    // A write that fails (ENOSPC above all) must not take the supervisor down with an unhandled 'error'.
    const logFailed = new Promise<string>((resolve) =>
      logFile.on("error", (err) => {
        if (isNoSpaceError(err)) {
          noSpaceSeen ??= `writing ${paths.logFile}: ENOSPC`;
          resolve(noSpaceReason("the log cannot be written"));
        } else log.warn(`cannot write ${paths.logFile}: ${err.message}`);
      }),
    );
    cleanups.push(async () => void logFile.end());
    const platform = await startPlatform({
      config: { ...config, lakebase: { ...config.lakebase, database } },
      secrets,
      postgres: pg,
      proxyPort: config.local.port,
      appPort,
      workspacePort,
      keptSignIns: {
        sessions: kept.sessions,
        users: kept.users,
        save: (sessions, users) => writeStandInState(standInFile, { workspacePort, sessions, users }),
      },
      credentialTtlSeconds: options.credentialTtlSeconds,
      userTokenTtlSeconds: options.userTokenTtlSeconds,
      proxy: options.proxy,
      managedMcp: options.managedMcp,
      userApiScopes: options.userApiScopes,
      log,
    }).catch((err: NodeJS.ErrnoException) => {
      // Taken between our check and the proxy's listen.
      throw portError(config.local.port, "the local Apps proxy", err, PROXY_PORT_HINT);
    });
    cleanups.push(() => platform.close());
    interrupted();
    log.info(`databricks stand-in: workspace ${platform.workspaceUrl}, app ${platform.appUrl}`);

    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      ...platform.appEnv,
      // On a laptop the app's port must not be reachable from the network without the proxy's token:
      // the runtime binds where this says (the platform's default, all interfaces, is for its container).
      METAMCP_LISTEN_HOST: "127.0.0.1",
      ...Object.fromEntries(
        METAMCP_FIXED_PORTS.filter((p) => p.given).map((p) => [p.variable, String(p.given)]),
      ),
    };
    const lastLines: string[] = [];
    // Instance 1 is the app as always; more (`--instances N`) get MetaMCP ports of their own.
    const specs: AppInstanceSpec[] = [{ appPort, env }];
    const taken = [
      config.local.port,
      pg.port,
      appPort,
      platform.workspacePort,
      ...METAMCP_FIXED_PORTS.map((p) => p.port),
    ];
    for (let i = 1; i < (options.instances ?? 1); i++) {
      const pick = async () => {
        const p = await freePort("127.0.0.1", taken);
        taken.push(p);
        return p;
      };
      const [app, backend, frontend] = [await pick(), await pick(), await pick()];
      specs.push({
        appPort: app,
        env: {
          ...env,
          DATABRICKS_APP_PORT: String(app),
          METAMCP_BACKEND_PORT: String(backend),
          METAMCP_FRONTEND_PORT: String(frontend),
        },
      });
    }
    platform.rotation.routing = options.routing ?? "sticky";
    const instances = new AppInstances({
      // The command app.yaml gives the platform: the stand-in runs what Databricks would.
      command: [...APP_COMMAND],
      cwd: appDir,
      specs,
      rotation: platform.rotation,
      onLine: (i, _source, raw) => {
        const line = i === 0 || specs.length === 1 ? raw : `[instance ${i + 1}] ${raw}`;
        logFile.write(`${line}\n`);
        lastLines.push(line);
        if (lastLines.length > 20) lastLines.shift();
        platform.logs.push("APP", line);
        log.debug(`[app] ${line}`);
      },
    });
    instances.start();
    cleanups.push(async () => void (await instances.stop(15_000)));
    const instanceState = () =>
      specs.length > 1
        ? { instances: instances.pids().map((pid, i) => ({ pid, port: specs[i]!.appPort })) }
        : {};
    const exitOf = (e: InstanceExit) =>
      `${specs.length > 1 ? `instance ${e.instance + 1} of ` : ""}the app exited`;

    const state: LocalRunState = {
      status: "starting",
      supervisorPid: process.pid,
      pgPid: pg.pid,
      appPid: instances.pids()[0],
      ...instanceState(),
      ports: { proxy: config.local.port, workspace: platform.workspacePort, app: appPort, postgres: pg.port },
      appUrl: platform.appUrl,
      workspaceUrl: platform.workspaceUrl,
      platform: { userTokenTtlSeconds: options.userTokenTtlSeconds ?? 3600, ...platform.proxyLimits },
      startedAt: new Date().toISOString(),
    };
    writeRunState(paths, state);

    const exited = Promise.race([
      instances.exited.then((e) => {
        const how = `${exitOf(e)} (code ${e.code ?? "none"}, signal ${e.signal ?? "none"})`;
        return noSpaceSeen || noSpaceProblem(paths) ? noSpaceReason(how) : how;
      }),
      pgGone,
      logFailed,
    ]);
    // The app exiting ends the wait at once (with its code and last lines), as does a stop request.
    const stopWaiting = new AbortController();
    const onAbort = () => stopWaiting.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    let appGone = false;
    const appDied = instances.exited.then((e) => {
      appGone = true;
      stopWaiting.abort();
      const tail = lastLines.slice(-10).map((l) => `  | ${maskLocalTokens(l)}`);
      return new UserError(
        "app_exited",
        `${exitOf(e)} before it was healthy (exit code ${e.code ?? "none"}${e.signal ? `, signal ${e.signal}` : ""}); its last lines:\n${tail.join("\n") || "  (no output)"}`,
        EXIT.unhealthy,
        `the whole log: ${paths.logFile}`,
      );
    });
    try {
      await waitFor(
        async () => {
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
          signal: stopWaiting.signal,
          // Refused while the proxy or the app starts; anything else ends the wait at once.
          transient: fetchNotAnswering,
        },
      );
    } catch (err) {
      if (appGone) throw await appDied;
      interrupted();
      throw new UserError(
        "local_unhealthy",
        `${(err as Error).message}; see ${paths.logFile}`,
        EXIT.unhealthy,
      );
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    // The other instances: each healthy at its own port too (the proxy's check reached one of them).
    for (const spec of specs.slice(1))
      await waitFor(
        async () => {
          const res = await fetch(`http://127.0.0.1:${spec.appPort}/metamcp/health`, {
            signal: AbortSignal.timeout(5000),
          });
          return res.status === 200 ? true : undefined;
        },
        {
          timeoutMs: options.healthTimeoutMs ?? 10 * 60_000,
          what: `instance at port ${spec.appPort} to be healthy`,
          signal: stopWaiting.signal,
          transient: fetchNotAnswering,
        },
      );
    log.success(
      `healthy after ${((performance.now() - t0) / 1000).toFixed(1)} s${specs.length > 1 ? ` (${specs.length} instances, ${platform.rotation.routing})` : ""}`,
    );

    let current: LocalRunState = { ...state, status: "healthy" };
    return {
      state: current,
      failed: exited,
      stop: stopAll,
      rollingRestart: async () => {
        await instances.rollingRestart({
          healthTimeoutMs: options.healthTimeoutMs ?? 10 * 60_000,
          log: (m) => log.info(m),
        });
        current = {
          ...current,
          appPid: instances.pids()[0],
          ...instanceState(),
          rolledAt: new Date().toISOString(),
        };
        return current;
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
