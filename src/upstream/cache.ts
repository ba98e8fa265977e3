import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { GitCommandError, git, loadGit } from "./git.js";
import { withDirLock } from "./lock.js";
import { type RepoCredentials, type RepoLocation, splitRepoCredentials, urlDigest } from "./repo-url.js";

export { normalizeRepoUrl } from "./repo-url.js";

/**
 * The clone cache: one bare mirror per repository URL (branches and tags only, not GitHub's pull refs),
 * fetched on every prepare, so a second prepare of another ref downloads only what is new. The mirror is
 * a partial clone (`blob:none`): every commit and tree, and the files of the commits checked out only
 * (fetched in one batch at checkout). Servers without filter support send everything, which works too.
 */
export interface Mirror {
  /** The bare repository in the cache. */
  gitDir: string;
  /** Without credentials. */
  repoUrl: string;
  /** For commands that reach the remote (fetches, and checkouts of a partial mirror). */
  credentials?: RepoCredentials | undefined;
  /** The remote's default branch (its HEAD), e.g. `main`. */
  defaultBranch: string;
  /** True when this prepare created the mirror (a full download). */
  created: boolean;
  /** False when the remote could not be reached and the cached refs were used. */
  fetched: boolean;
  durationMs: number;
}

/** The cache root: `METAMCP_CACHE_DIR` when set, else the user cache dir (e.g. ~/.cache/metamcp-databricks). */
export async function defaultCacheDir(configured: string | undefined): Promise<string> {
  if (configured) return path.resolve(configured);
  const envPaths = (await import("env-paths")).default;
  return envPaths("metamcp-databricks", { suffix: "" }).cache;
}

/** `<cache>/repos/<name>-<hash of the credential-free url>.git`: readable, distinct for forks with one name. */
export function mirrorDirFor(cacheDir: string, repoUrl: string): string {
  const url = splitRepoCredentials(repoUrl).url;
  const name =
    url
      .replace(/\.git$/, "")
      .split(/[/:\\]/)
      .filter(Boolean)
      .slice(-2)
      .join("-")
      .replace(/[^A-Za-z0-9._-]/g, "_") || "repo";
  return path.join(cacheDir, "repos", `${name}-${urlDigest(url)}.git`);
}

/** Partial clone: history (for "is this tag on the default branch") without every version of every file. */
const FILTER = "blob:none";

async function fetchInto(
  gitDir: string,
  credentials: RepoCredentials | undefined,
  whileFetching?: () => void,
): Promise<void> {
  // Once execa is loaded, git() spawns before it returns: by the time `whileFetching` runs, git is fetching.
  await loadGit();
  const fetching = git(
    ["fetch", "--prune", "--force", "--update-shallow", "--quiet", `--filter=${FILTER}`, "origin"],
    {
      gitDir,
      credentials,
    },
  );
  whileFetching?.();
  await fetching;
}

/** The local repository a `file://` URL or a path names, if it is one. */
function localSourcePath(repoUrl: string): string | undefined {
  if (repoUrl.startsWith("file://")) {
    try {
      return new URL(repoUrl).pathname;
    } catch {
      return undefined;
    }
  }
  return path.isAbsolute(repoUrl) || repoUrl.startsWith(".") ? repoUrl : undefined;
}

/**
 * A shallow local source is refused before any fetch: a partial fetch from it never ends (each missing
 * object starts another lazy fetch from the same shallow repository, seen as thousands of git processes),
 * and without its history no tag can be told to be on the default branch.
 */
async function refuseShallowLocalSource(repoUrl: string): Promise<void> {
  const local = localSourcePath(repoUrl);
  if (!local || !existsSync(local)) return;
  const r = await git(["-C", local, "rev-parse", "--is-shallow-repository"], { allowFailure: true });
  if (r.exitCode === 0 && r.stdout.trim() === "true")
    throw new UserError(
      "repo_shallow",
      `${repoUrl} is a shallow clone: prepare needs the repository's history (which tags are on the default branch)`,
      EXIT.input,
      `make it whole first (\`git -C ${local} fetch --unshallow\`), or point METAMCP_REPO_URL / --repo at a full clone`,
    );
}

async function remoteDefaultBranch(
  gitDir: string,
  credentials: RepoCredentials | undefined,
): Promise<string | undefined> {
  const r = await git(["ls-remote", "--symref", "origin", "HEAD"], {
    gitDir,
    allowFailure: true,
    credentials,
  });
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

/** `repo_unreachable`, naming the credential-free URL; git's own words are masked by the logger/handler. */
export function unreachable(repoUrl: string, err: unknown): UserError {
  const detail = err instanceof GitCommandError ? err.result.stderr.trim() : String(err);
  return new UserError(
    "repo_unreachable",
    `cannot fetch ${repoUrl}: ${detail}`,
    EXIT.input,
    "check METAMCP_REPO_URL / --repo, your network and git credentials for that host",
    // No `cause`: git's command line and output stay out of --debug stacks.
  );
}

const LOCK_WAIT_MS = 5 * 60_000;

/**
 * One prepare at a time per mirror (two concurrent fetches into one repository fight over ref locks). A holder
 * killed on this machine is recognised at once (see lock.ts); one elsewhere after 20 s without a refresh.
 */
export async function withMirrorLock<T>(gitDir: string, log: Logger, fn: () => Promise<T>): Promise<T> {
  return withDirLock(gitDir, log, { waitMs: LOCK_WAIT_MS, what: `the clone cache ${gitDir}` }, fn);
}

/**
 * A first clone is built in `<mirror>.tmp-<host>-<pid>-<random>` and renamed into place. Under the mirror's
 * lock no one else is building one, so any such directory is a killed run's: removed.
 */
function removeDeadTempMirrors(gitDir: string, log: Logger): void {
  const dir = path.dirname(gitDir);
  const prefix = `${path.basename(gitDir)}.tmp-`;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    if (!name.startsWith(prefix)) continue;
    rmSync(path.join(dir, name), { recursive: true, force: true });
    log.info(`removed ${path.join(dir, name)}, left by an interrupted prepare`);
  }
}

function hostTag(): string {
  return os.hostname().replace(/[^A-Za-z0-9.-]/g, "_");
}

/** Creates or updates the mirror of the repository under `cacheDir` (under the mirror's lock). */
export async function syncMirror(
  repo: string | RepoLocation,
  cacheDir: string,
  log: Logger,
  /** Synchronous work to do while git fetches (prepare loads the TypeScript compiler here). */
  whileFetching?: () => void,
): Promise<Mirror> {
  const location = typeof repo === "string" ? splitRepoCredentials(repo) : repo;
  const gitDir = mirrorDirFor(cacheDir, location.url);
  return withMirrorLock(gitDir, log, () => syncMirrorLocked(location, gitDir, log, whileFetching));
}

async function syncMirrorLocked(
  location: RepoLocation,
  gitDir: string,
  log: Logger,
  whileFetching: (() => void) | undefined,
): Promise<Mirror> {
  const { url: repoUrl, credentials } = location;
  const started = performance.now();
  let created = false;
  let fetched = true;
  removeDeadTempMirrors(gitDir, log);
  await refuseShallowLocalSource(repoUrl);
  if (!existsSync(path.join(gitDir, "HEAD"))) {
    log.info(`cloning ${repoUrl} into the cache (${gitDir})`);
    mkdirSync(path.dirname(gitDir), { recursive: true });
    // Built beside its final place and renamed, so an interrupted first clone never leaves a broken mirror.
    const tmp = `${gitDir}.tmp-${hostTag()}-${process.pid}-${randomBytes(4).toString("hex")}`;
    try {
      await git(["init", "--bare", "--quiet", tmp]);
      await git(["config", "remote.origin.url", repoUrl], { gitDir: tmp });
      await git(["config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*"], { gitDir: tmp });
      await git(["config", "--add", "remote.origin.fetch", "+refs/tags/*:refs/tags/*"], { gitDir: tmp });
      await git(["config", "remote.origin.promisor", "true"], { gitDir: tmp });
      await git(["config", "remote.origin.partialclonefilter", FILTER], { gitDir: tmp });
      await git(["config", "gc.auto", "0"], { gitDir: tmp });
      try {
        await fetchInto(tmp, credentials, whileFetching);
      } catch (err) {
        throw unreachable(repoUrl, err);
      }
      const head = await remoteDefaultBranch(tmp, credentials);
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
      await fetchInto(gitDir, credentials, whileFetching);
      const head = await remoteDefaultBranch(gitDir, credentials);
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
      EXIT.input,
      "is this an empty repository? Check --repo / METAMCP_REPO_URL",
    );
  }
  return {
    gitDir,
    repoUrl,
    credentials,
    defaultBranch,
    created,
    fetched,
    durationMs: Math.round(performance.now() - started),
  };
}
