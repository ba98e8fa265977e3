import { spawn } from "node:child_process";
import {
  closeSync,
  createReadStream,
  existsSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  watch,
} from "node:fs";
import type { CommandContext } from "../cli/common.js";
import { confirm } from "../cli/confirm.js";
import type { Config } from "../config/load.js";
import { EXIT, UserError } from "../errors.js";
import { ensureBuilt } from "./ensure-built.js";
import { findLeftovers, stopLeftovers } from "./leftovers.js";
import type { ProxyLimits } from "./platform/index.js";
import { DEFAULT_LOCAL_USER } from "./platform/users.js";
import { cliCommand } from "./printed.js";
import { StartInterrupted, startLocalStack } from "./stack.js";
import {
  acquireLock,
  clearRunState,
  isAlive,
  type LocalPaths,
  type LocalRunState,
  loadOrCreateSecrets,
  localPaths,
  lockOwner,
  pidExists,
  readRunState,
  runsProgram,
  SUPERVISOR_WORDS,
  takeOverLock,
  writeRunState,
} from "./state.js";
import { localUserToken } from "./user-token.js";
import { waitFor } from "./wait.js";

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
  /** User OAuth tokens' lifetime (Databricks: 3600). */
  tokenTtlSeconds: number;
  proxy: ProxyLimits;
  json: boolean;
}

/**
 * What `up` and `status` print: the run state. It holds no token (only `local token` gives one); a run
 * state written by an older version may still carry one, which is never shown.
 */
function publicState(state: LocalRunState): LocalRunState {
  const { token: _old, ...rest } = state as LocalRunState & { token?: string };
  return rest;
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
    `  MCP clients: ${cliCommand("connect <endpoint> --local")} writes their config; by hand: ${state.appUrl}/metamcp/<endpoint>/mcp`,
    `               with "Authorization: Bearer <token>", plus "X-API-Key: <MetaMCP API key>" for endpoints that want a key`,
    `               (token: ${cliCommand("local token")}, valid ${Math.round((state.platform?.userTokenTtlSeconds ?? 3600) / 60)} min, as ${DEFAULT_LOCAL_USER.name} <${DEFAULT_LOCAL_USER.email}>:`,
    "               sign in as that user to own the endpoints you connect to; docs/identity.md)",
    `  logs: ${cliCommand("local logs --follow")}   stop: Ctrl-C (or ${cliCommand("local down")} when detached)`,
  ].join("\n");
}

function statusOf(config: Config): { state?: LocalRunState; running: boolean } {
  const paths = localPaths(config.local.stateDir);
  const state = readRunState(paths);
  return { state, running: !!state && isAlive(state.supervisorPid) };
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

export async function localUp(opts: LocalUpOptions, ctx: CommandContext): Promise<number> {
  const { config, log } = { config: opts.config, log: ctx.log };
  const paths = localPaths(config.local.stateDir);
  const current = statusOf(config);
  if (current.running && !opts.daemon) {
    throw new UserError(
      "local_already_running",
      `the local app is already running (pid ${current.state?.supervisorPid}) at ${current.state?.appUrl}`,
      2,
      `\`${cliCommand("local status")}\` shows it; \`${cliCommand("local down")}\` stops it`,
    );
  }

  // The lock first: a second `up` (or its --fresh) must never touch a database another `up` is starting.
  const release =
    opts.daemon && opts.lockFrom !== undefined ? takeOverLock(paths, opts.lockFrom) : acquireLock(paths);
  try {
    await stopLeftoversOfDeadRun(paths, log);

    if (opts.fresh && !opts.daemon) {
      if (!opts.yes && !(await confirm(`Delete every row of the local database in ${paths.pgDir}?`))) {
        throw new UserError(
          "not_confirmed",
          "--fresh deletes the local database: not confirmed",
          2,
          "add --yes to skip the question",
        );
      }
      rmSync(paths.pgDir, { recursive: true, force: true });
      log.info(`deleted the local database (${paths.pgDir})`);
    }

    if (!opts.daemon && opts.build) await ensureBuilt(config, log);

    if (opts.detach) return await upDetached(opts, ctx, paths);
    return await upForeground(opts, ctx, paths);
  } finally {
    release(); // a no-op once a detached supervisor took the lock over
  }
}

/** A `local up` that was killed (kill -9, a crash) left its app and PostgreSQL running: stop them first. */
async function stopLeftoversOfDeadRun(paths: LocalPaths, log: CommandContext["log"]): Promise<void> {
  const prev = readRunState(paths);
  if (prev && prev.supervisorPid !== process.pid && isAlive(prev.supervisorPid)) return;
  const leftovers = findLeftovers(paths, prev);
  if (leftovers.length === 0) return;
  log.warn(
    `a previous \`local up\`${prev ? ` (pid ${prev.supervisorPid})` : ""} ended without stopping; stopping what it left: ${leftovers.map((l) => `${l.what} (pid ${l.pid})`).join(", ")}`,
  );
  await stopLeftovers(leftovers);
  clearRunState(paths);
}

/** The supervisor must outlive this command: re-run ourselves detached (logs to the state dir). */
async function upDetached(opts: LocalUpOptions, ctx: CommandContext, paths: LocalPaths): Promise<number> {
  const { config, log } = { config: opts.config, log: ctx.log };
  const out = openSync(paths.logFile, "a");
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
    "--port",
    String(config.local.port),
    "--no-build",
  ];
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ["ignore", out, out],
    env: process.env,
  });
  closeSync(out);
  child.unref();
  let exitCode: number | null | undefined;
  child.once("exit", (code, sig) => {
    exitCode = code ?? (sig ? 1 : null);
  });
  log.info(`started the local supervisor (pid ${child.pid}); waiting until healthy (logs: ${paths.logFile})`);
  // Ctrl-C here stops the supervisor too: nothing keeps starting in the background behind the user's back.
  const stop = stopRequests();
  const forward = () => {
    if (isAlive(child.pid)) process.kill(child.pid!, "SIGTERM");
  };
  stop.signal.addEventListener("abort", forward, { once: true });
  let state: LocalRunState;
  try {
    state = await waitFor(
      (): LocalRunState | undefined => {
        const s = readRunState(paths);
        if (s && s.supervisorPid === child.pid && (s.status === "healthy" || s.status === "failed")) return s;
        if (exitCode !== undefined || !isAlive(child.pid))
          return { status: "failed", error: "the supervisor exited" } as LocalRunState;
        return undefined;
      },
      { timeoutMs: 11 * 60_000, what: "the local app to become healthy" },
    );
  } finally {
    stop.dispose();
  }
  if (stop.signal.aborted) {
    await waitFor(() => (isAlive(child.pid) ? undefined : true), {
      timeoutMs: 30_000,
      what: "the local supervisor to stop",
    }).catch(() => undefined);
    throw new StartInterrupted(String(stop.signal.reason));
  }
  if (state.status !== "healthy") {
    // What the supervisor printed this time (its error and the app's last lines), secrets masked.
    loadOrCreateSecrets(paths);
    const text = existsSync(paths.logFile) ? readFileSync(paths.logFile, "utf8").slice(logStart) : "";
    const tail = text.trimEnd().split("\n").slice(-30).join("\n");
    const code = exitCode === 2 || exitCode === 4 || exitCode === 5 ? exitCode : 1;
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

async function upForeground(opts: LocalUpOptions, ctx: CommandContext, paths: LocalPaths): Promise<number> {
  const { config, log } = { config: opts.config, log: ctx.log };
  const stop = stopRequests();
  try {
    const stack = await startLocalStack({
      config,
      paths,
      credentialTtlSeconds: opts.credentialTtlSeconds,
      userTokenTtlSeconds: opts.tokenTtlSeconds,
      proxy: opts.proxy,
      log,
      signal: stop.signal,
    });
    writeRunState(paths, { ...stack.state, status: "healthy" });
    ctx.result(publicState({ ...stack.state, status: "healthy" }), () => readyBanner(stack.state));
    const reason = await new Promise<string>((resolve) => {
      if (stop.signal.aborted) resolve(String(stop.signal.reason));
      stop.signal.addEventListener("abort", () => resolve(String(stop.signal.reason)), { once: true });
      stack.failed.then((why) => resolve(why));
    });
    const failed = !reason.startsWith("received");
    log.info(`stopping (${reason})`);
    writeRunState(paths, {
      ...stack.state,
      status: failed ? "failed" : "stopping",
      ...(failed ? { error: reason } : {}),
    });
    await stack.stop();
    log.success("stopped: app, proxy, Databricks stand-in and PostgreSQL");
    return failed ? 1 : 0;
  } catch (err) {
    if (err instanceof StartInterrupted) log.info(`stopped before it was healthy (${stop.signal.reason})`);
    const prev = readRunState(paths);
    if (prev?.supervisorPid === process.pid) {
      writeRunState(paths, {
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

export async function localDown(config: Config, ctx: CommandContext): Promise<number> {
  const paths = localPaths(config.local.stateDir);
  const state = readRunState(paths);
  // The supervisor: from run.json, or (while it is still starting, or when run.json is damaged) the lock.
  const supervisor = [state?.supervisorPid, lockOwner(paths)].find(
    (pid) => pid !== undefined && pid !== process.pid && runsProgram(pid, SUPERVISOR_WORDS),
  );
  if (supervisor !== undefined) {
    process.kill(supervisor, "SIGTERM");
    await waitFor(() => (pidExists(supervisor) ? undefined : true), {
      timeoutMs: 30_000,
      what: `the local supervisor (pid ${supervisor}) to stop`,
    }).catch(() => {
      if (isAlive(supervisor)) process.kill(supervisor, "SIGKILL");
    });
  }
  // What is left: the recorded app and our data dir's PostgreSQL, each checked to still be that program.
  const leftovers = findLeftovers(paths, readRunState(paths) ?? state);
  await stopLeftovers(leftovers);
  clearRunState(paths);
  const stopped = [...(supervisor ? [supervisor] : []), ...leftovers.map((l) => l.pid)];
  ctx.result(
    { stopped: stopped.length > 0, pids: stopped },
    supervisor
      ? "stopped"
      : leftovers.length
        ? `stopped leftovers: ${leftovers.map((l) => `${l.what} (pid ${l.pid})`).join(", ")}`
        : "nothing is running",
  );
  return 0;
}

export async function localStatus(config: Config, ctx: CommandContext): Promise<number> {
  const { state, running } = statusOf(config);
  if (!state || !running) {
    ctx.result({ status: "stopped" }, "stopped (start it with `make local`)");
    return EXIT.notRunning;
  }
  let health: { status: number; ms: number; reason?: string } | { error: string };
  const t0 = performance.now();
  try {
    const { token } = await localUserToken(config.local.stateDir);
    // Longer than the app's own database probe (5 s), so a 503 with its reason arrives instead of a timeout.
    const res = await fetch(`${state.appUrl}/metamcp/health`, {
      headers: { authorization: `Bearer ${token}` },
      redirect: "manual",
      signal: AbortSignal.timeout(15_000),
    });
    const body = await res.text().catch(() => "");
    let reason: string | undefined;
    try {
      reason = (JSON.parse(body) as { reason?: unknown }).reason as string | undefined;
    } catch {
      reason = undefined;
    }
    health = {
      status: res.status,
      ms: Math.round(performance.now() - t0),
      ...(typeof reason === "string" ? { reason } : {}),
    };
  } catch (err) {
    health = { error: (err as Error).message };
  }
  const healthy = "status" in health && health.status === 200;
  const alive = {
    supervisor: isAlive(state.supervisorPid),
    app: isAlive(state.appPid),
    postgres: isAlive(state.pgPid),
  };
  const shown = healthy ? state.status : "unhealthy";
  ctx.result({ ...publicState(state), status: shown, healthy, alive, health }, () =>
    [
      `status:    ${shown}`,
      `URL:       ${state.appUrl}`,
      `token:     \`${cliCommand("local token")}\` prints a fresh one`,
      `health:    ${"status" in health ? `${health.status} in ${health.ms} ms${health.reason ? `: ${health.reason}` : ""}` : health.error}`,
      `PIDs:      supervisor ${state.supervisorPid} (${alive.supervisor ? "up" : "gone"}), app ${state.appPid} (${alive.app ? "up" : "gone"}), postgres ${state.pgPid} (${alive.postgres ? "up" : "gone"})`,
      `ports:     proxy ${state.ports.proxy}, workspace ${state.ports.workspace}, app ${state.ports.app}, postgres ${state.ports.postgres}`,
      ...(healthy ? [] : [`→ the app's log says more: \`${cliCommand("local logs")}\``]),
    ].join("\n"),
  );
  return healthy ? 0 : EXIT.unhealthy;
}

/**
 * Prints a FRESH user token for the local Apps proxy alone on stdout, for `TOKEN=$(... local token)`:
 * minted by the running stand-in (one hour unless `--token-ttl`), never written to logs or state files.
 */
export async function localToken(config: Config, write: (text: string) => void): Promise<number> {
  const { token } = await localUserToken(config.local.stateDir);
  write(`${token}\n`);
  return 0;
}

/** Prints the app's log file through `write` (the CLI's stdout), then follows it until Ctrl-C. */
export async function localLogs(
  config: Config,
  write: (text: string) => void,
  follow: boolean,
): Promise<number> {
  const paths = localPaths(config.local.stateDir);
  if (!existsSync(paths.logFile)) {
    throw new UserError(
      "no_local_logs",
      `no local logs yet (${paths.logFile})`,
      2,
      "start the app with `make local ARGS=--detach`",
    );
  }
  let offset = 0;
  const printFrom = async () => {
    const size = statSync(paths.logFile).size;
    if (size < offset) offset = 0;
    if (size === offset) return;
    const stream = createReadStream(paths.logFile, { start: offset, end: size - 1 });
    for await (const chunk of stream) write(String(chunk));
    offset = size;
  };
  await printFrom();
  if (!follow) return 0;
  await new Promise<void>((resolve) => {
    const watcher = watch(paths.logFile, () => void printFrom());
    process.once("SIGINT", () => {
      watcher.close();
      resolve();
    });
  });
  return 0;
}
