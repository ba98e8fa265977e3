import { mkdirSync, readFileSync, rmdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import type { Logger } from "../log/logger.js";
import { waitFor } from "../retry.js";
import { processRuns } from "./alive.js";

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

const ownerFileOf = (lockPath: string) => `${lockPath}.owner.json`;

/** The owner file beside `lockPath`, as written (undefined: none, or unreadable). */
export function readLockOwner(lockPath: string): LockOwner | undefined {
  try {
    const o = JSON.parse(readFileSync(ownerFileOf(lockPath), "utf8")) as LockOwner;
    return typeof o.pid === "number" && typeof o.host === "string" ? o : undefined;
  } catch {
    return undefined;
  }
}

function inodeOf(dir: string): number | undefined {
  return statSync(dir, { throwIfNoEntry: false })?.ino;
}

/** The owner of this very lock directory (not a leftover owner file of an older one). */
function currentOwner(lockPath: string): LockOwner | undefined {
  const owner = readLockOwner(lockPath);
  return owner && owner.lockIno === inodeOf(lockPath) ? owner : undefined;
}

export function describeOwner(o: LockOwner): string {
  return `process ${o.pid} on ${o.host} (since ${o.since})`;
}

/** A live process holds the lock (`owner` undefined: one that took it a moment ago, its owner file not yet written). */
export class LockHeld extends Error {
  constructor(
    readonly owner: LockOwner | undefined,
    readonly lockPath: string,
  ) {
    super(`${owner ? describeOwner(owner) : "another process"} holds the lock ${lockPath}`);
  }
}

export interface OwnedLockOptions {
  log: Logger;
  /** How long to wait for a live holder before throwing LockHeld (0: one try). */
  waitMs: number;
  /** Wait only while this pid holds the lock: any other live holder is thrown at once. */
  waitOnlyFor?: number;
  /**
   * Whether the holder's pid still holds the lock (default: that it runs). `local up` asks that it still
   * runs a `local` command: a pid reused by an unrelated program holds nothing.
   */
  holderRuns?: (pid: number) => boolean;
}

type Holds = NonNullable<OwnedLockOptions["holderRuns"]>;

/** A process of this machine, since its last boot, that no longer holds; never true for another host. */
function ownerIsDead(owner: LockOwner, holds: Holds): boolean {
  if (owner.host !== os.hostname()) return false;
  if (owner.boot && currentBootId() && owner.boot !== currentBootId()) return true;
  return !holds(owner.pid);
}

/**
 * Removes the lock when its owner names a process of this machine that no longer runs: a holder killed with
 * SIGKILL is recognised at once, without waiting for the lock to go stale.
 */
function reclaimIfDead(lockPath: string, holds: Holds, log: Logger): boolean {
  const owner = currentOwner(lockPath);
  const ino = inodeOf(lockPath);
  if (!owner || ino === undefined || !ownerIsDead(owner, holds)) return false;
  log.warn(`removing the lock ${lockPath} left by ${describeOwner(owner)}, which no longer runs`);
  // Re-checked right before removal: never remove a lock someone took in the meantime.
  if (inodeOf(lockPath) === ino) {
    rmSync(ownerFileOf(lockPath), { force: true });
    try {
      rmdirSync(lockPath);
    } catch {
      // Someone else reclaimed it first.
    }
  }
  return true;
}

/**
 * Takes the lock directory `lockPath` for `target` and returns its release. proper-lockfile does the locking
 * (an atomic mkdir, refreshed while held, taken over when not refreshed for STALE_MS); beside it,
 * `<lockPath>.owner.json` names the holder, so a holder killed with SIGKILL on this machine is recognised at
 * once and its lock reclaimed, and a live one is named in the error. The one lock of the CLI: the clone
 * cache's and `local up`'s state directory's.
 */
export async function takeOwnedLock(
  target: string,
  lockPath: string,
  options: OwnedLockOptions,
): Promise<() => Promise<void>> {
  const { log } = options;
  // Unchanged from the clone cache's first lock: a holder that exited but is not reaped yet still counts.
  const holds: Holds = options.holderRuns ?? ((pid) => processRuns(pid, { zombieCounts: true }));
  mkdirSync(path.dirname(lockPath), { recursive: true });
  // Loaded on use: a prepare that finds its tree current never locks.
  const lockfile = (await import("proper-lockfile")).default;
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
  let told = false;
  // Polled every 200 ms until `waitMs`; only "held by someone alive" is waited on, every other error is thrown.
  const release = await waitFor(
    async () => {
      const got = (await tryLock()) ?? (reclaimIfDead(lockPath, holds, log) ? await tryLock() : undefined);
      if (got) return got;
      const owner = currentOwner(lockPath);
      if (options.waitOnlyFor !== undefined && owner && owner.pid !== options.waitOnlyFor)
        throw new LockHeld(owner, lockPath);
      if (!told && options.waitMs > 0) {
        log.info(`waiting for ${owner ? describeOwner(owner) : "another process"} to release ${lockPath}`);
        told = true;
      }
      return undefined;
    },
    {
      timeoutMs: options.waitMs,
      intervalMs: 200,
      what: `the lock ${lockPath}`,
      onTimeout: () => new LockHeld(currentOwner(lockPath), lockPath),
    },
  );
  const me: LockOwner = {
    pid: process.pid,
    host: os.hostname(),
    boot: currentBootId(),
    lockIno: inodeOf(lockPath) ?? -1,
    since: new Date().toISOString(),
  };
  // Written whole so a reader never sees half an owner.
  writeFileAtomic.sync(ownerFileOf(lockPath), `${JSON.stringify(me)}\n`);
  let released: Promise<void> | undefined;
  // Once only: a caller may hand the lock on early and still release it in its `finally`.
  return () => {
    released ??= (async () => {
      if (readLockOwner(lockPath)?.pid === process.pid) rmSync(ownerFileOf(lockPath), { force: true });
      await release().catch(() => undefined);
    })();
    return released;
  };
}
