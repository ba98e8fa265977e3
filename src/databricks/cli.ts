import { execa } from "execa";
import semver from "semver";
import { DatabricksError, EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { maskSecrets } from "../log/secrets.js";
import { MIN_BUNDLE_CLI_VERSION } from "./render.js";

/** The oldest CLI that deploys everything we render (see MIN_BUNDLE_CLI_VERSION in render.ts). */
export const MIN_CLI_VERSION = MIN_BUNDLE_CLI_VERSION;

/**
 * The oldest CLI with every command app-deploy, app-logs, app-status, destroy and the auth secret run:
 * `apps logs` (with `--follow`, `--search`, `--tail-lines`) came last, in v0.279.0 (databricks/cli
 * CHANGELOG, "Introduce `databricks apps logs` command", #3908); `bundle run` of an app, `bundle sync`,
 * `bundle destroy`, `apps get`, `apps get-deployment` and `secrets put-secret` (value on stdin) are older. Below
 * {@link MIN_CLI_VERSION}, so that floor covers it.
 */
export const MIN_APP_COMMANDS_CLI_VERSION = "0.279.0";

export const CLI_INSTALL_HINT =
  "install or upgrade it: https://docs.databricks.com/dev-tools/cli/install (e.g. `brew install databricks/tap/databricks` or `curl -fsSL https://raw.githubusercontent.com/databricks/setup-cli/main/install.sh | sh`); or point DATABRICKS_CLI at the binary";

export interface CliResult {
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  /** Working directory (the bundle root for `bundle` commands). */
  cwd?: string;
  /** Each output line as it arrives (long steps show progress). */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** Text on stdin (secret values never go on the command line). */
  input?: string;
  /** Stops the command (SIGINT, as Ctrl-C would); its exit then is no failure. */
  signal?: AbortSignal;
  /** false: stdout only reaches `onLine` (a stream that runs for hours is not kept in memory). */
  bufferStdout?: boolean;
}

/**
 * The Databricks CLI, the engine for bundles. We detect it and check its version; we never install
 * it (it is not on npm). Every call names the profile explicitly.
 */
export class DatabricksCli {
  private checkedVersion: string | undefined;

  constructor(
    readonly bin: string,
    readonly profile: string,
    private readonly log: Logger,
  ) {}

  /** The installed version, e.g. `0.297.0`; throws `cli_missing` when there is no binary. */
  async version(): Promise<string> {
    if (this.checkedVersion) return this.checkedVersion;
    let out: string;
    try {
      const r = await execa(this.bin, ["version"], { reject: false, timeout: 30_000 });
      if (r.failed && (r as { code?: string }).code === "ENOENT") throw enoent(this.bin);
      out = `${r.stdout}\n${r.stderr}`;
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT" || isUserError(err)) throw enoent(this.bin);
      throw err;
    }
    const v = semver.coerce(/v?(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? "")?.version;
    if (!v) {
      throw new UserError(
        "cli_version_unknown",
        `could not read the Databricks CLI version from \`${this.bin} version\`: ${out.trim().slice(0, 200)}`,
        EXIT.input,
        CLI_INSTALL_HINT,
      );
    }
    this.checkedVersion = v;
    return v;
  }

  /** Fails with how to upgrade when the CLI is older than {@link MIN_CLI_VERSION}. */
  async requireVersion(): Promise<string> {
    const v = await this.version();
    if (semver.lt(v, MIN_CLI_VERSION)) {
      throw new UserError(
        "cli_too_old",
        `Databricks CLI ${v} is too old: ${MIN_CLI_VERSION} or later is needed (direct engine with app lifecycle.started, Lakebase postgres_roles and postgres_databases)`,
        EXIT.input,
        CLI_INSTALL_HINT,
      );
    }
    return v;
  }

  /** Runs `databricks <args> --profile P`; a non-zero exit becomes a DatabricksError with its output. */
  async run(args: string[], options: CliRunOptions = {}): Promise<CliResult> {
    const full = [...args, "--profile", this.profile];
    this.log.debug(`$ ${this.bin} ${full.join(" ")}`);
    const child = execa(this.bin, full, {
      cwd: options.cwd,
      reject: false,
      input: options.input,
      env: { DATABRICKS_CONFIG_PROFILE: this.profile },
      // Non-interactive: never wait on a prompt.
      stdin: options.input === undefined ? "ignore" : "pipe",
      cancelSignal: options.signal,
      killSignal: "SIGINT",
      buffer: { stdout: options.bufferStdout ?? true, stderr: true },
    });
    if (options.onLine) {
      const each = (stream: "stdout" | "stderr", from: NodeJS.ReadableStream | null) => {
        // A chunk may end inside a line: the rest waits for the next chunk (or the end).
        let rest = "";
        const emit = (line: string) => {
          if (line.trim()) options.onLine?.(line, stream);
        };
        from?.on("data", (chunk: Buffer) => {
          const lines = (rest + chunk.toString("utf8")).split(/\r?\n/);
          rest = lines.pop() ?? "";
          for (const line of lines) emit(line);
        });
        from?.on("end", () => emit(rest));
      };
      each("stdout", child.stdout);
      each("stderr", child.stderr);
    }
    const r = await child;
    if ((r as { code?: string }).code === "ENOENT") throw enoent(this.bin);
    if (r.isCanceled) return { stdout: String(r.stdout ?? ""), stderr: String(r.stderr ?? "") };
    if (r.exitCode !== 0) {
      throw cliFailure(args, r.exitCode ?? -1, String(r.stdout ?? ""), String(r.stderr ?? ""), this.profile);
    }
    return { stdout: String(r.stdout ?? ""), stderr: String(r.stderr ?? "") };
  }

  /** Runs a command with `-o json` and parses its stdout. */
  async json<T>(args: string[], options: CliRunOptions = {}): Promise<T> {
    const r = await this.run([...args, "-o", "json"], options);
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      throw new DatabricksError(
        "cli_bad_output",
        `\`databricks ${args.join(" ")} -o json\` did not print JSON: ${maskSecrets(r.stdout.slice(0, 300))}`,
      );
    }
  }
}

function isUserError(err: unknown): boolean {
  return err instanceof UserError;
}

function enoent(bin: string): UserError {
  return new UserError(
    "cli_missing",
    `the Databricks CLI (\`${bin}\`) was not found`,
    EXIT.input,
    CLI_INSTALL_HINT,
  );
}

const NOT_LOGGED_IN =
  /not logged in|no cached credentials|auth login|invalid access token|refresh token is invalid|token.*expired|default auth: cannot configure default credentials|OAuth is not configured/i;

/** Go's HTTP client failing to reach the workspace's REST API (`Get "https://…": dial tcp …`). */
const UNREACHABLE =
  /\b(Get|Post|Put|Patch|Delete) "https?:\/\/[^"]+": (dial tcp|.*no such host|.*i\/o timeout|.*connection reset)/;

/** Turns a failed CLI call into a message that says what went wrong and what to do. */
export function cliFailure(
  args: string[],
  exitCode: number,
  stdout: string,
  stderr: string,
  profile: string,
): UserError {
  const output = `${stderr}\n${stdout}`.trim();
  const tail = output.split(/\r?\n/).slice(-15).join("\n");
  const command = `databricks ${args.join(" ")}`;
  const missing = /has no (\S+) profile configured/.exec(output);
  if (missing) {
    return new UserError(
      "profile_missing",
      `Databricks profile ${profile} is not configured: ${missing[0]}`,
      EXIT.input,
      `run \`databricks auth login --host <workspace-url> --profile ${profile}\``,
    );
  }
  if (UNREACHABLE.test(output)) {
    return new DatabricksError(
      "workspace_unreachable",
      `\`${command}\` failed: the workspace of profile ${profile} did not answer\n${tail}`,
      "the workspace did not answer: check the profile's host and your network (`make doctor` checks both)",
    );
  }
  if (NOT_LOGGED_IN.test(output)) {
    return new DatabricksError(
      "not_logged_in",
      `\`${command}\` failed: profile ${profile} is not logged in\n${tail}`,
      `run \`databricks auth login --profile ${profile}\``,
    );
  }
  return new DatabricksError("cli_failed", `\`${command}\` failed (exit ${exitCode}):\n${tail}`);
}

/** The CLI's own `Error: …` line of a failed call (cmd/root/root.go prints every error so), if any. */
export function cliErrorMessage(err: unknown): string | undefined {
  if (!(err instanceof UserError) || err.code !== "cli_failed") return undefined;
  return err.message
    .split("\n")
    .filter((l) => l.startsWith("Error: "))
    .at(-1)
    ?.slice("Error: ".length);
}
