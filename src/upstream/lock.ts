import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { describeOwner, LockHeld, takeOwnedLock } from "../process/lock.js";

export interface DirLockOptions {
  /** How long to wait for a live holder before giving up with exit 2. */
  waitMs: number;
  /** What the lock protects, for messages ("the clone cache …"). */
  what: string;
}

/**
 * Runs `fn` holding `<target>.lock` (src/process/lock.ts: a holder killed on this machine is recognised at
 * once; a live one is waited on for `waitMs`, then named).
 */
export async function withDirLock<T>(
  target: string,
  log: Logger,
  options: DirLockOptions,
  fn: () => Promise<T>,
): Promise<T> {
  const lockPath = `${target}.lock`;
  let release: () => Promise<void>;
  try {
    release = await takeOwnedLock(target, lockPath, { log, waitMs: options.waitMs });
  } catch (err) {
    if (!(err instanceof LockHeld)) throw err;
    throw new UserError(
      "cache_locked",
      `${options.what} is locked by ${err.owner ? describeOwner(err.owner) : "another prepare"} (lock ${lockPath})`,
      EXIT.input,
      `wait for it to finish and run again; if no such process runs, remove ${lockPath}`,
    );
  }
  try {
    return await fn();
  } finally {
    await release();
  }
}
