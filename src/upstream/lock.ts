import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";

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

/** True when `pid` runs on this machine (a process of another user counts: EPERM). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A process that is this machine's since its last boot and no longer runs; never true for another host. */
export function ownerIsDead(owner: Pick<LockOwner, "pid" | "host" | "boot">): boolean {
  if (owner.host !== os.hostname()) return false;
  if (owner.boot && currentBootId() && owner.boot !== currentBootId()) return true;
  return !processAlive(owner.pid);
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
  const deadline = Date.now() + options.waitMs;
  let told = false;
  let release: () => Promise<void>;
  // Loaded on use: a prepare that finds its tree current never locks.
  const lockfile = (await import("proper-lockfile")).default;
  for (;;) {
    try {
      release = await lockfile.lock(target, {
        lockfilePath: lockPath,
        realpath: false,
        stale: STALE_MS,
        onCompromised: (err) => log.warn(`lost the lock ${lockPath}: ${err.message}`),
      });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ELOCKED") throw err;
    }
    const owner = readOwner(ownerFile);
    const ino = inodeOf(lockPath);
    if (owner && ino !== undefined && owner.lockIno === ino && ownerIsDead(owner)) {
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
      continue;
    }
    if (Date.now() > deadline) {
      const holder = owner && owner.lockIno === ino ? describeOwner(owner) : "another prepare";
      throw new UserError(
        "cache_locked",
        `${options.what} is locked by ${holder} (lock ${lockPath})`,
        2,
        `wait for it to finish and run again; if no such process runs, remove ${lockPath}`,
      );
    }
    if (!told) {
      log.info(
        `waiting for ${owner && owner.lockIno === ino ? describeOwner(owner) : "another prepare"} to release ${lockPath}`,
      );
      told = true;
    }
    await delay(200);
  }
  const me: LockOwner = {
    pid: process.pid,
    host: os.hostname(),
    boot: currentBootId(),
    lockIno: inodeOf(lockPath) ?? -1,
    since: new Date().toISOString(),
  };
  // Written whole (temp file + rename) so a reader never sees half an owner.
  const tmp = `${ownerFile}.${process.pid}-${randomBytes(3).toString("hex")}`;
  writeFileSync(tmp, `${JSON.stringify(me)}\n`);
  renameSync(tmp, ownerFile);
  try {
    return await fn();
  } finally {
    if (readOwner(ownerFile)?.pid === process.pid) rmSync(ownerFile, { force: true });
    await release().catch(() => undefined);
  }
}
