import { EXIT, UserError } from "../errors.js";
import type { RepoCredentials } from "./repo-url.js";

export interface GitRunOptions {
  /** `--git-dir` (bare repositories, the cache mirror). */
  gitDir?: string;
  cwd?: string;
  /** Extra environment (e.g. GIT_INDEX_FILE). */
  env?: Record<string, string>;
  /** Return the failure instead of throwing. */
  allowFailure?: boolean;
  /** Credentials split off the repository URL, for commands that reach the remote. */
  credentials?: RepoCredentials | undefined;
}

export interface GitResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Never prompt for credentials, never read the user's pager or editor: this runs unattended. */
const GIT_ENV = {
  GIT_TERMINAL_PROMPT: "0",
  GIT_ASKPASS: "",
  GCM_INTERACTIVE: "never",
  GIT_PAGER: "cat",
  LC_ALL: "C",
};

/**
 * Hands git the URL's credentials without writing them anywhere: the helper list is reset (so the user's own
 * helpers neither answer nor store them), then a shell helper prints them from the child's environment.
 * The command line names only the variables.
 */
const CREDENTIAL_HELPER =
  '!f() { test "$1" = get || exit 0; printf "username=%s\\npassword=%s\\n" "$MMDB_GIT_USERNAME" "$MMDB_GIT_PASSWORD"; }; f';

function credentialArgs(credentials: RepoCredentials | undefined): {
  args: string[];
  env: Record<string, string>;
} {
  if (!credentials) return { args: [], env: {} };
  return {
    args: ["-c", "credential.helper=", "-c", `credential.helper=${CREDENTIAL_HELPER}`],
    env: { MMDB_GIT_USERNAME: credentials.username, MMDB_GIT_PASSWORD: credentials.password },
  };
}

type Execa = typeof import("execa");
let execaModule: Execa | undefined;

/**
 * Loads execa (about as long as a no-op prepare takes in all, so only once git is needed: a tag's no-op
 * prepare never loads it). After this, `git()` starts its child before returning, so synchronous work
 * done right after the call (the TypeScript compiler loading during a fetch) overlaps git's.
 */
export async function loadGit(): Promise<void> {
  execaModule ??= await import("execa");
}

/** Runs git. A missing git binary is a user error (exit 2); a failing command throws unless allowed. */
export function git(args: string[], options: GitRunOptions = {}): Promise<GitResult> {
  if (execaModule) return runGit(execaModule, args, options);
  return loadGit().then(() => runGit(execaModule as Execa, args, options));
}

async function runGit({ execa }: Execa, args: string[], options: GitRunOptions): Promise<GitResult> {
  const auth = credentialArgs(options.credentials);
  const full = options.gitDir ? [`--git-dir=${options.gitDir}`, ...args] : args;
  const r = await execa("git", [...auth.args, ...full], {
    cwd: options.cwd,
    env: { ...GIT_ENV, ...options.env, ...auth.env },
    stdin: "ignore",
    reject: false,
  });
  if (r.failed && r.exitCode === undefined && !r.signal) {
    // git could not be started at all.
    if (r.code === "ENOENT") {
      throw new UserError(
        "git_missing",
        "cannot run git: not found on PATH",
        EXIT.input,
        "install git and put it on PATH",
      );
    }
    throw new UserError(
      "git_missing",
      `cannot run git (${r.code ?? r.originalMessage ?? r.shortMessage})`,
      EXIT.input,
      "install git (>= 2.25) and put it on PATH",
    );
  }
  const out: GitResult = {
    exitCode: r.exitCode ?? 1,
    stdout: r.stdout,
    stderr: r.stderr || (r.signal ? `killed by ${r.signal}` : ""),
  };
  if (out.exitCode !== 0 && !options.allowFailure) {
    throw new GitCommandError(full, out);
  }
  return out;
}

export class GitCommandError extends Error {
  override readonly name = "GitCommandError";
  constructor(
    readonly args: string[],
    readonly result: GitResult,
  ) {
    super(
      `git ${args.join(" ")} failed (exit ${result.exitCode}): ${result.stderr.trim() || result.stdout.trim()}`,
    );
  }
}
