import { spawn } from "node:child_process";
import { closeSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { Config } from "../config/load.js";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { processRuns } from "../process/alive.js";
import { waitFor } from "../retry.js";
import { dataInUseError, liveSupervisorOf } from "./data-owner.js";
import { NO_SPACE_HINT } from "./disk-space.js";
import { ensureBuilt } from "./ensure-built.js";
import { findLeftovers, postmasterOf, stopLeftovers } from "./leftovers.js";
import type { InstanceRouting } from "./platform/apps-proxy-routing.js";
import type { ManagedMcpSettings, ProxyLimits } from "./platform/index.js";
import { DEFAULT_LOCAL_USER } from "./platform/users.js";
import { cliCommand } from "./printed.js";
import { type CommandOutput, currentRun, publicState } from "./run-info.js";
import { StartInterrupted, startLocalStack } from "./stack.js";
import {
  acquireLock,
  clearRunState,
  type LocalPaths,
  type LocalRunState,
  loadOrCreateSecrets,
  localPaths,
  openLogForAppend,
  readRunState,
  takeOverLock,
  writeRunState,
} from "./state.js";

const USER_EXITS = [EXIT.input, EXIT.drift, EXIT.databricks, EXIT.notRunning, EXIT.unhealthy] as const;

export interface LocalUpOptions {
  config: Config;
  detach: boolean;
  daemon: boolean;
  /** The detached supervisor: the PID of the `up --detach` that holds the lock for it. */
  lockFrom?: number;
  /** false: use the app tree as it is (no prepare, no build). */
  build: boolean;
  fresh: boolean;
  yes: boolean;
  credentialTtlSeconds: number;
  /** OAuth tokens' lifetime, users' and the app's service principal's (Databricks: 3600). */
  tokenTtlSeconds: number;
  proxy: ProxyLimits;
  /** The app's user authorization scopes (`--user-scopes`). */
  userApiScopes?: string[];
  /** The stand-in workspace's managed MCP servers (`--managed-mcp`, `--genie-delay`). */
  managedMcp?: Partial<ManagedMcpSettings>;
  /** `--instances N` (1–5) and `--routing sticky|spread` (docs/scaling.md). */
  instances?: number;
  routing?: InstanceRouting;
  json: boolean;
  /** Asks a yes/no question (--fresh without --yes); the CLI asks on the terminal. */
  confirm: (question: string) => Promise<boolean>;
}

/**
 * One URL for a person (the browser signs in at the stand-in, as at Databricks); what programs need is
 * behind `local token` and docs/apps-proxy.md.
 */
function readyBanner(state: LocalRunState): string {
  return [
    "",
    "MetaMCP is running locally, behind a stand-in of the Databricks Apps proxy.",
    `  Open ${state.appUrl}/ in your browser: sign in at the local login page (any name and email): you are in MetaMCP as that person.`,
    "",
    `  MCP clients: ${cliCommand("connect <endpoint> --local")} prints their config (add --write to write it); by hand: ${state.appUrl}/metamcp/<endpoint>/mcp`,
    `               with "Authorization: Bearer <token>", plus "X-API-Key: <MetaMCP API key>" for endpoints that want a key`,
    `               (token: ${cliCommand("local token")}, valid ${Math.round((state.platform?.userTokenTtlSeconds ?? 3600) / 60)} min, as ${DEFAULT_LOCAL_USER.name} <${DEFAULT_LOCAL_USER.email}>:`,
    "               sign in as that user to own the endpoints you connect to; docs/identity.md)",
    `  logs: ${cliCommand("local logs --follow")}   stop: Ctrl-C (or ${cliCommand("local down")} when detached)`,
  ].join("\n");
}

/**
 * SIGINT/SIGTERM/SIGHUP while `up` starts or runs: one abort for the whole start (whatever started is stopped
 * again), and the reason once it runs. Installed for the command's life, removed after.
 */
function stopRequests(): { signal: AbortSignal; dispose(): void } {
  const ctl = new AbortController();
  const on = (sig: NodeJS.Signals) => ctl.abort(`received ${sig}`);
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of signals) process.on(s, on);
  return {
    signal: ctl.signal,
    dispose: () => {
      for (const s of signals) process.off(s, on);
    },
  };
}

export async function localUp(opts: LocalUpOptions, ctx: CommandOutput): Promise<number> {
  const { config, log } = { config: opts.config, log: ctx.log };
  const paths = localPaths(config.local.stateDir);
  const current = currentRun(config);
  if (current.running && !opts.daemon) {
    throw new UserError(
      "local_already_running",
      `the local app is already running (pid ${current.state?.supervisorPid}) at ${current.state?.appUrl}`,
      EXIT.input,
      `\`${cliCommand("local status")}\` shows it; \`${cliCommand("local down")}\` stops it`,
    );
  }

  // The lock first: a second `up` (or its --fresh) must never touch a database another `up` is starting.
  const release = await (opts.daemon && opts.lockFrom !== undefined
    ? takeOverLock(paths, opts.lockFrom)
    : acquireLock(paths));
  try {
    await stopLeftoversOfDeadRun(paths, log);

    if (opts.fresh && !opts.daemon) {
      if (!opts.yes && !(await opts.confirm(`Delete every row of the local database in ${paths.pgDir}?`))) {
        throw new UserError(
          "not_confirmed",
          "--fresh deletes the local database: not confirmed",
          EXIT.input,
          "add --yes to skip the question",
        );
      }
      rmSync(paths.pgDir, { recursive: true, force: true });
      log.info(`deleted the local database (${paths.pgDir})`);
    }

    if (!opts.daemon && opts.build) await ensureBuilt(config, log);

    if (opts.detach) return await upDetached(opts, ctx, paths, release);
    return await upForeground(opts, ctx, paths);
  } finally {
    await release(); // a no-op once handed to a detached supervisor
  }
}

/**
 * run.json at a failure: written atomically (a new file, renamed) when it can be; a full disk refuses the
 * new file, so then rewritten in place (its old blocks), else left: `local status` tells a full disk itself.
 */
function writeRunStateEvenIfFull(paths: LocalPaths, state: LocalRunState): void {
  try {
    writeRunState(paths, state);
  } catch {
    try {
      writeFileSync(paths.stateFile, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    } catch {
      // nothing more to try
    }
  }
}

/** A `local up` that was killed (kill -9, a crash) left its app and PostgreSQL running: stop them first. */
async function stopLeftoversOfDeadRun(paths: LocalPaths, log: Logger): Promise<void> {
  const prev = readRunState(paths);
  if (prev && prev.supervisorPid !== process.pid && processRuns(prev.supervisorPid)) return;
  // A PostgreSQL on our data dir run by a live `local up` this state does not record: in use, not left over.
  const holder = liveSupervisorOf(postmasterOf(paths.pgDir));
  if (holder !== undefined && holder !== prev?.supervisorPid) throw dataInUseError(paths, holder);
  const leftovers = findLeftovers(paths, prev);
  if (leftovers.length === 0) return;
  log.warn(
    `a previous \`local up\`${prev ? ` (pid ${prev.supervisorPid})` : ""} ended without stopping; stopping what it left: ${leftovers.map((l) => `${l.what} (pid ${l.pid})`).join(", ")}`,
  );
  await stopLeftovers(leftovers);
  clearRunState(paths);
}

/** The supervisor must outlive this command: re-run ourselves detached (logs to the state dir). */
async function upDetached(
  opts: LocalUpOptions,
  ctx: CommandOutput,
  paths: LocalPaths,
  handOverLock: () => Promise<void>,
): Promise<number> {
  const { config, log } = { config: opts.config, log: ctx.log };
  const out = openLogForAppend(paths);
  const logStart = statSync(paths.logFile).size;
  const args = [
    process.argv[1]!,
    ...(opts.json ? ["--json"] : []),
    "--target",
    config.target,
    "local",
    "up",
    "--daemon",
    "--lock-from",
    String(process.pid),
    "--credential-ttl",
    String(opts.credentialTtlSeconds),
    "--token-ttl",
    String(opts.tokenTtlSeconds),
    "--request-timeout",
    String(opts.proxy.requestTimeoutMs / 1000),
    "--stream-timeout",
    String(opts.proxy.streamTimeoutMs / 1000),
    "--forward-authorization",
    opts.proxy.forwardAuthorization ? "on" : "off",
    ...(opts.managedMcp?.offered === false ? ["--managed-mcp", "off"] : []),
    ...(opts.userApiScopes?.length ? ["--user-scopes", opts.userApiScopes.join(",")] : []),
    ...(opts.managedMcp?.genieDelayMs !== undefined
      ? ["--genie-delay", String(opts.managedMcp.genieDelayMs / 1000)]
      : []),
    "--port",
    String(config.local.port),
    "--no-build",
    ...(opts.instances && opts.instances > 1
      ? ["--instances", String(opts.instances), "--routing", opts.routing ?? "sticky"]
      : []),
  ];
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ["ignore", out, out],
    env: process.env,
  });
  closeSync(out);
  child.unref();
  // The supervisor waits for this process (and no other) to let go of the lock.
  await handOverLock();
  let exitCode: number | null | undefined;
  child.once("exit", (code, sig) => {
    exitCode = code ?? (sig ? 1 : null);
  });
  log.info(`started the local supervisor (pid ${child.pid}); waiting until healthy (logs: ${paths.logFile})`);
  // Ctrl-C here stops the supervisor too: nothing keeps starting in the background behind the user's back.
  const stop = stopRequests();
  const forward = () => {
    if (processRuns(child.pid)) process.kill(child.pid!, "SIGTERM");
  };
  stop.signal.addEventListener("abort", forward, { once: true });
  let state: LocalRunState;
  try {
    state = await waitFor(
      (): LocalRunState | undefined => {
        const s = readRunState(paths);
        if (s && s.supervisorPid === child.pid && (s.status === "healthy" || s.status === "failed")) return s;
        if (exitCode !== undefined || !processRuns(child.pid))
          return { status: "failed", error: "the supervisor exited" } as LocalRunState;
        return undefined;
      },
      { timeoutMs: 11 * 60_000, what: "the local app to become healthy" },
    );
  } finally {
    stop.dispose();
  }
  if (stop.signal.aborted) {
    await waitFor(() => (processRuns(child.pid) ? undefined : true), {
      timeoutMs: 30_000,
      what: "the local supervisor to stop",
    }).catch(() => undefined);
    throw new StartInterrupted(String(stop.signal.reason));
  }
  if (state.status !== "healthy") {
    // The supervisor writes "failed" just before it exits: wait for its exit code, which says which failure.
    await waitFor(() => (exitCode !== undefined ? true : undefined), {
      timeoutMs: 30_000,
      what: "the local supervisor to exit",
    }).catch(() => undefined);
    // What the supervisor printed this time (its error and the app's last lines), secrets masked.
    loadOrCreateSecrets(paths);
    // logStart is a byte offset: cut the bytes, then decode (a string index would cut mid-line or past the end).
    const text = existsSync(paths.logFile)
      ? readFileSync(paths.logFile).subarray(logStart).toString("utf8")
      : "";
    const tail = text.trimEnd().split("\n").slice(-30).join("\n");
    // The supervisor's own exit code when it is a user error's (2-6); anything else is a bug (1).
    const code = USER_EXITS.find((c) => c === exitCode) ?? EXIT.bug;
    throw new UserError(
      "local_failed",
      `the local app did not start: ${state.error ?? "the supervisor exited"}\n${tail}`,
      code,
      `the whole log: ${paths.logFile}`,
    );
  }
  ctx.result(publicState(state), () => readyBanner(state));
  return 0;
}

async function upForeground(opts: LocalUpOptions, ctx: CommandOutput, paths: LocalPaths): Promise<number> {
  const { config, log } = { config: opts.config, log: ctx.log };
  const stop = stopRequests();
  try {
    const stack = await startLocalStack({
      config,
      paths,
      credentialTtlSeconds: opts.credentialTtlSeconds,
      userTokenTtlSeconds: opts.tokenTtlSeconds,
      proxy: opts.proxy,
      managedMcp: opts.managedMcp,
      userApiScopes: opts.userApiScopes,
      log,
      signal: stop.signal,
      instances: opts.instances,
      routing: opts.routing,
    });
    // `local restart --rolling` asks with SIGUSR2: the instances are replaced one at a time (app-instances.ts).
    let rolling = false;
    const onRolling = () => {
      if (rolling) return;
      rolling = true;
      void stack
        .rollingRestart()
        .then(
          (state) => {
            writeRunState(paths, state);
            log.success("rolling restart done: every instance replaced, one at a time");
          },
          (err: Error) => {
            log.error(`rolling restart failed: ${err.message}`);
            const now = readRunState(paths);
            if (now)
              writeRunState(paths, { ...now, rollingError: `${new Date().toISOString()} ${err.message}` });
          },
        )
        .finally(() => {
          rolling = false;
        });
    };
    process.on("SIGUSR2", onRolling);
    // Healthy once the handler is there: `local restart` signals only a healthy run.
    writeRunState(paths, { ...stack.state, status: "healthy" });
    ctx.result(publicState({ ...stack.state, status: "healthy" }), () => readyBanner(stack.state));
    const reason = await new Promise<string>((resolve) => {
      if (stop.signal.aborted) resolve(String(stop.signal.reason));
      stop.signal.addEventListener("abort", () => resolve(String(stop.signal.reason)), { once: true });
      stack.failed.then((why) => resolve(why));
    });
    process.off("SIGUSR2", onRolling);
    const failed = !reason.startsWith("received");
    log.info(`stopping (${reason})`);
    writeRunStateEvenIfFull(paths, {
      ...stack.state,
      status: failed ? "failed" : "stopping",
      ...(failed ? { error: reason } : {}),
    });
    await stack.stop();
    log.success("stopped: app, proxy, Databricks stand-in and PostgreSQL");
    if (reason.startsWith("no space left on"))
      throw new UserError("local_no_space", reason, EXIT.unhealthy, NO_SPACE_HINT);
    if (reason.startsWith("PostgreSQL exited"))
      throw new UserError("local_postgres_exited", reason, EXIT.unhealthy, `its log: ${paths.logFile}`);
    return failed ? EXIT.bug : 0;
  } catch (err) {
    if (err instanceof StartInterrupted) log.info(`stopped before it was healthy (${stop.signal.reason})`);
    const prev = readRunState(paths);
    if (prev?.supervisorPid === process.pid && prev.status !== "failed") {
      writeRunStateEvenIfFull(paths, {
        ...prev,
        status: "failed",
        error: err instanceof Error ? err.message : String(err),
      });
    }
    throw err;
  } finally {
    stop.dispose();
    const last = readRunState(paths);
    if (last?.supervisorPid === process.pid && last.status !== "failed") clearRunState(paths);
  }
}
