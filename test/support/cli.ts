import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CLI_BIN = path.join(PROJECT_ROOT, "bin/metamcp-databricks.js");

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real CLI binary (built by `pretest`) as a child process, the way a user does.
 * The environment starts empty but for PATH/HOME/git identity so the host's settings never leak in.
 */
export async function runCli(
  args: string[],
  options: {
    cwd?: string;
    env?: Record<string, string | undefined>;
    input?: string;
    timeoutMs?: number;
  } = {},
): Promise<CliResult> {
  const base: Record<string, string | undefined> = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    GIT_AUTHOR_NAME: "test",
    GIT_AUTHOR_EMAIL: "test@example.invalid",
    GIT_COMMITTER_NAME: "test",
    GIT_COMMITTER_EMAIL: "test@example.invalid",
    NO_COLOR: "1",
  };
  const result = await execa("node", [CLI_BIN, ...args], {
    cwd: options.cwd ?? PROJECT_ROOT,
    env: { ...base, ...options.env },
    extendEnv: false,
    reject: false,
    input: options.input ?? "",
    timeout: options.timeoutMs ?? 300_000,
    stripFinalNewline: false,
  });
  return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr) };
}
