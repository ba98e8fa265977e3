import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync, statSync, utimesSync } from "node:fs";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import envPaths from "env-paths";
import { UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { GitCommandError, git } from "./git.js";

/**
 * The clone cache: one bare mirror per repository URL (branches and tags only, not GitHub's pull refs),
 * fetched on every prepare, so a second prepare of another ref downloads only what is new.
 */
export interface Mirror {
  /** The bare repository in the cache. */
  gitDir: string;
  repoUrl: string;
  /** The remote's default branch (its HEAD), e.g. `main`. */
  defaultBranch: string;
  /** True when this prepare created the mirror (a full download). */
  created: boolean;
  /** False when the remote could not be reached and the cached refs were used. */
  fetched: boolean;
  durationMs: number;
}

/** The cache root: `METAMCP_CACHE_DIR` when set, else the user cache dir (e.g. ~/.cache/metamcp-databricks). */
export function defaultCacheDir(configured: string | undefined): string {
  if (configured) return path.resolve(configured);
  return envPaths("metamcp-databricks", { suffix: "" }).cache;
}

const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i;
const SCP_LIKE = /^[^/\\]+@[^/\\:]+:/;

/** A local path becomes absolute (so the cache key and the manifest do not depend on the cwd); URLs stay. */
export function normalizeRepoUrl(repoUrl: string, cwd: string): string {
  const trimmed = repoUrl.trim();
  if (URL_LIKE.test(trimmed) || SCP_LIKE.test(trimmed)) return trimmed.replace(/\/+$/, "");
  const local = path.resolve(cwd, trimmed);
  if (!existsSync(local)) {
    throw new UserError(
      "repo_not_found",
      `repository ${repoUrl} is neither a URL nor an existing local path (looked for ${local})`,
      2,
      "set --repo / METAMCP_REPO_URL to a git URL (https://, ssh://, file://) or a local repository path",
    );
  }
  return local;
}

/** `<cache>/repos/<name>-<hash of url>.git`: readable, and distinct for forks with the same name. */
export function mirrorDirFor(cacheDir: string, repoUrl: string): string {
  const hash = createHash("sha256").update(repoUrl).digest("hex").slice(0, 12);
  const name =
    repoUrl
      .replace(/\.git$/, "")
      .split(/[/:\\]/)
      .filter(Boolean)
      .slice(-2)
      .join("-")
      .replace(/[^A-Za-z0-9._-]/g, "_") || "repo";
  return path.join(cacheDir, "repos", `${name}-${hash}.git`);
}

async function fetchInto(gitDir: string): Promise<void> {
  await git(["fetch", "--prune", "--force", "--update-shallow", "--quiet", "origin"], { gitDir });
}

async function remoteDefaultBranch(gitDir: string): Promise<string | undefined> {
  const r = await git(["ls-remote", "--symref", "origin", "HEAD"], { gitDir, allowFailure: true });
  const m = /^ref: refs\/heads\/(\S+)\s+HEAD$/m.exec(r.stdout);
  return m?.[1];
}

async function localDefaultBranch(gitDir: string): Promise<string | undefined> {
  const r = await git(["symbolic-ref", "--quiet", "HEAD"], { gitDir, allowFailure: true });
  const m = /^refs\/heads\/(.+)$/.exec(r.stdout.trim());
  if (!m) return undefined;
  const exists = await git(["rev-parse", "--verify", "--quiet", `refs/heads/${m[1]}`], {
    gitDir,
    allowFailure: true,
  });
  return exists.exitCode === 0 ? m[1] : undefined;
}

function unreachable(repoUrl: string, err: unknown): UserError {
  const detail = err instanceof GitCommandError ? err.result.stderr.trim() : String(err);
  return new UserError(
    "repo_unreachable",
    `cannot fetch ${repoUrl}: ${detail}`,
    2,
    "check METAMCP_REPO_URL / --repo, your network and git credentials for that host",
    { cause: err },
  );
}

const LOCK_STALE_MS = 10 * 60_000;
const LOCK_WAIT_MS = 5 * 60_000;

/**
 * One prepare at a time per mirror (two concurrent fetches into one repository fight over ref locks).
 * A lock older than LOCK_STALE_MS (a killed prepare) is taken over; the holder refreshes it while it works.
 */
export async function withMirrorLock<T>(gitDir: string, log: Logger, fn: () => Promise<T>): Promise<T> {
  const lock = `${gitDir}.lock`;
  mkdirSync(path.dirname(lock), { recursive: true });
  const deadline = Date.now() + LOCK_WAIT_MS;
  let told = false;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > LOCK_STALE_MS) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new UserError(
          "cache_locked",
          `the clone cache ${gitDir} is locked by another prepare (lock ${lock})`,
          2,
          `wait for the other prepare to finish, or remove ${lock} if none is running`,
        );
      }
      if (!told) log.info(`waiting for another prepare using ${gitDir}`);
      told = true;
      await delay(200);
    }
  }
  const keepAlive = setInterval(() => {
    const now = new Date();
    try {
      utimesSync(lock, now, now);
    } catch {
      // removed under us: nothing to refresh
    }
  }, 60_000);
  keepAlive.unref();
  try {
    return await fn();
  } finally {
    clearInterval(keepAlive);
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Creates or updates the mirror of `repoUrl` under `cacheDir` (under the mirror's lock). */
export async function syncMirror(repoUrl: string, cacheDir: string, log: Logger): Promise<Mirror> {
  const gitDir = mirrorDirFor(cacheDir, repoUrl);
  return withMirrorLock(gitDir, log, () => syncMirrorLocked(repoUrl, gitDir, log));
}

async function syncMirrorLocked(repoUrl: string, gitDir: string, log: Logger): Promise<Mirror> {
  const started = performance.now();
  let created = false;
  let fetched = true;
  if (!existsSync(path.join(gitDir, "HEAD"))) {
    log.info(`cloning ${repoUrl} into the cache (${gitDir})`);
    mkdirSync(path.dirname(gitDir), { recursive: true });
    // Built beside its final place and renamed, so an interrupted first clone never leaves a broken mirror.
    const tmp = `${gitDir}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
    try {
      await git(["init", "--bare", "--quiet", tmp]);
      await git(["config", "remote.origin.url", repoUrl], { gitDir: tmp });
      await git(["config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*"], { gitDir: tmp });
      await git(["config", "--add", "remote.origin.fetch", "+refs/tags/*:refs/tags/*"], { gitDir: tmp });
      await git(["config", "gc.auto", "0"], { gitDir: tmp });
      try {
        await fetchInto(tmp);
      } catch (err) {
        throw unreachable(repoUrl, err);
      }
      const head = await remoteDefaultBranch(tmp);
      if (head) await git(["symbolic-ref", "HEAD", `refs/heads/${head}`], { gitDir: tmp });
      try {
        renameSync(tmp, gitDir);
      } catch (err) {
        // Another prepare created it meanwhile: use theirs.
        if (!existsSync(path.join(gitDir, "HEAD"))) throw err;
      }
      created = true;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  } else {
    log.info(`updating the cached mirror of ${repoUrl}`);
    try {
      await fetchInto(gitDir);
      const head = await remoteDefaultBranch(gitDir);
      if (head) await git(["symbolic-ref", "HEAD", `refs/heads/${head}`], { gitDir });
    } catch (err) {
      fetched = false;
      const when = statSync(path.join(gitDir, "FETCH_HEAD"), { throwIfNoEntry: false })?.mtime;
      log.warn(
        `could not update the cache from ${repoUrl}; using the refs cached ${when ? `at ${when.toISOString()}` : "earlier"} (${unreachable(repoUrl, err).message})`,
      );
    }
  }
  const defaultBranch = await localDefaultBranch(gitDir);
  if (!defaultBranch) {
    throw new UserError(
      "no_default_branch",
      `${repoUrl} has no default branch (its HEAD points at no branch)`,
      2,
      "is this an empty repository? Check --repo / METAMCP_REPO_URL",
    );
  }
  return {
    gitDir,
    repoUrl,
    defaultBranch,
    created,
    fetched,
    durationMs: Math.round(performance.now() - started),
  };
}
