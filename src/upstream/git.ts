import { spawn } from "node:child_process";
import { UserError } from "../errors.js";
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

/** Runs git. A missing git binary is a user error (exit 2); a failing command throws unless allowed. */
export async function git(args: string[], options: GitRunOptions = {}): Promise<GitResult> {
  const auth = credentialArgs(options.credentials);
  const full = options.gitDir ? [`--git-dir=${options.gitDir}`, ...args] : args;
  // node:child_process, not execa: loading execa costs more than a no-op prepare may take in all.
  const result = await new Promise<{
    code: number | null;
    signal: string | null;
    stdout: string;
    stderr: string;
  }>((resolve, reject) => {
    const child = spawn("git", [...auth.args, ...full], {
      cwd: options.cwd,
      env: { ...process.env, ...GIT_ENV, ...options.env, ...auth.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code, signal) =>
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out)
          .toString("utf8")
          .replace(/\r?\n$/, ""),
        stderr: Buffer.concat(err)
          .toString("utf8")
          .replace(/\r?\n$/, ""),
      }),
    );
  }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") {
      throw new UserError(
        "git_missing",
        "cannot run git: not found on PATH",
        2,
        "install git and put it on PATH",
      );
    }
    throw new UserError(
      "git_missing",
      `cannot run git (${err.code ?? err.message})`,
      2,
      "install git (>= 2.25) and put it on PATH",
    );
  });
  const out: GitResult = {
    exitCode: result.code ?? 1,
    stdout: result.stdout,
    stderr: result.stderr || (result.signal ? `killed by ${result.signal}` : ""),
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
