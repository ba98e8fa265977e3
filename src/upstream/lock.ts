import { mkdirSync, readFileSync, rmdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { processRuns } from "../process/alive.js";

/** Who holds a lock: enough to tell, on the same machine, whether that process still runs. */
export interface LockOwner {
  pid: number;
  host: string;
  /** Linux's boot id: a pid from before a reboot is dead whatever runs under that number now. */
  boot: string;
  /** The lock directory's inode when this owner took it: a leftover owner file never speaks for a newer lock. */
  lockIno: number;
  since: string;
}

/** A holder refreshes its lock's mtime every STALE_MS / 2; one not refreshed for STALE_MS is dead. */
const STALE_MS = 20_000;

let bootId: string | undefined;
function currentBootId(): string {
  if (bootId === undefined) {
    try {
      bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    } catch {
      bootId = "";
    }
  }
  return bootId;
}

/** A process that is this machine's since its last boot and no longer runs; never true for another host. */
export function ownerIsDead(owner: Pick<LockOwner, "pid" | "host" | "boot">): boolean {
  if (owner.host !== os.hostname()) return false;
  if (owner.boot && currentBootId() && owner.boot !== currentBootId()) return true;
  return !processRuns(owner.pid, { zombieCounts: true });
}

function readOwner(file: string): LockOwner | undefined {
  try {
    const o = JSON.parse(readFileSync(file, "utf8")) as LockOwner;
    return typeof o.pid === "number" && typeof o.host === "string" ? o : undefined;
  } catch {
    return undefined;
  }
}

function inodeOf(dir: string): number | undefined {
  return statSync(dir, { throwIfNoEntry: false })?.ino;
}

export function describeOwner(o: LockOwner): string {
  return `process ${o.pid} on ${o.host} (since ${o.since})`;
}

/** The lock is held by someone alive (the message names them): the one failure worth waiting on. */
class LockHeld extends Error {}

/** Who holds the lock, as far as its owner file (of this very lock directory) says. */
function heldBy(lockPath: string, ownerFile: string): string {
  const owner = readOwner(ownerFile);
  return owner && owner.lockIno === inodeOf(lockPath) ? describeOwner(owner) : "another prepare";
}

/**
 * Removes the lock when its owner file (of this very lock directory) names a process of this machine that no
 * longer runs: a holder killed with SIGKILL is recognised at once, without waiting for the lock to go stale.
 */
function reclaimIfDead(lockPath: string, ownerFile: string, log: Logger): boolean {
  const owner = readOwner(ownerFile);
  const ino = inodeOf(lockPath);
  if (!owner || ino === undefined || owner.lockIno !== ino || !ownerIsDead(owner)) return false;
  log.warn(`removing the lock ${lockPath} left by ${describeOwner(owner)}, which no longer runs`);
  // Re-checked right before removal: never remove a lock someone took in the meantime.
  if (inodeOf(lockPath) === ino) {
    rmSync(ownerFile, { force: true });
    try {
      rmdirSync(lockPath);
    } catch {
      // Someone else reclaimed it first.
    }
  }
  return true;
}

export interface DirLockOptions {
  /** How long to wait for a live holder before giving up with exit 2. */
  waitMs: number;
  /** What the lock protects, for messages ("the clone cache …"). */
  what: string;
}

/**
 * Runs `fn` holding `<target>.lock`. proper-lockfile does the locking (an atomic mkdir, refreshed while held,
 * taken over when not refreshed for STALE_MS); beside it, `<target>.lock.owner.json` names the holder, so a
 * holder killed with SIGKILL on this machine is recognised at once and its lock reclaimed without waiting.
 */
export async function withDirLock<T>(
  target: string,
  log: Logger,
  options: DirLockOptions,
  fn: () => Promise<T>,
): Promise<T> {
  const lockPath = `${target}.lock`;
  const ownerFile = `${lockPath}.owner.json`;
  mkdirSync(path.dirname(lockPath), { recursive: true });
  let told = false;
  // Loaded on use: a prepare that finds its tree current never locks.
  const [lockfile, pRetry, writeFileAtomic] = await Promise.all([
    import("proper-lockfile").then((m) => m.default),
    import("p-retry").then((m) => m.default),
    import("write-file-atomic").then((m) => m.default),
  ]);
  const tryLock = async (): Promise<(() => Promise<void>) | undefined> => {
    try {
      return await lockfile.lock(target, {
        lockfilePath: lockPath,
        realpath: false,
        stale: STALE_MS,
        onCompromised: (err) => log.warn(`lost the lock ${lockPath}: ${err.message}`),
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ELOCKED") return undefined;
      throw err;
    }
  };
  let release: () => Promise<void>;
  try {
    // Polled every 200 ms until `waitMs`; only "held by someone else" is retried, every other error is thrown.
    release = await pRetry(
      async () => {
        const got =
          (await tryLock()) ?? (reclaimIfDead(lockPath, ownerFile, log) ? await tryLock() : undefined);
        if (got) return got;
        throw new LockHeld(heldBy(lockPath, ownerFile));
      },
      {
        retries: Number.POSITIVE_INFINITY,
        factor: 1,
        minTimeout: 200,
        maxRetryTime: options.waitMs,
        shouldRetry: ({ error }) => error instanceof LockHeld,
        onFailedAttempt: ({ error }) => {
          if (!(error instanceof LockHeld) || told || options.waitMs <= 0) return;
          log.info(`waiting for ${error.message} to release ${lockPath}`);
          told = true;
        },
      },
    );
  } catch (err) {
    if (!(err instanceof LockHeld)) throw err;
    throw new UserError(
      "cache_locked",
      `${options.what} is locked by ${err.message} (lock ${lockPath})`,
      EXIT.input,
      `wait for it to finish and run again; if no such process runs, remove ${lockPath}`,
    );
  }
  const me: LockOwner = {
    pid: process.pid,
    host: os.hostname(),
    boot: currentBootId(),
    lockIno: inodeOf(lockPath) ?? -1,
    since: new Date().toISOString(),
  };
  // Written whole so a reader never sees half an owner.
  writeFileAtomic.sync(ownerFile, `${JSON.stringify(me)}\n`);
  try {
    return await fn();
  } finally {
    if (readOwner(ownerFile)?.pid === process.pid) rmSync(ownerFile, { force: true });
    await release().catch(() => undefined);
  }
}
