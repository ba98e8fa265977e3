import type { Config } from "../config/load.js";
import { DatabricksError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { APP_MISSING } from "./apps.js";
import { cliErrorMessage, type DatabricksCli } from "./cli.js";
import { cliFor } from "./deployments.js";
import { connectWorkspace, oauthToken } from "./workspace.js";

/** One entry of the Apps log stream, as `databricks apps logs -o json` prints it. */
export interface AppLogEntry {
  source: string;
  /** Seconds since the epoch (float). */
  timestamp: number;
  message: string;
}

export interface LogReadOptions {
  /** Keep streaming until `signal` aborts (the CLI reopens a dropped stream itself). */
  follow: boolean;
  /** The server-side filter (the CLI sends it as the stream's first message). */
  search?: string;
  /** The last N entries first (the CLI's `--tail-lines`; its default, 200, when absent). */
  tail?: number;
  signal?: AbortSignal;
  onEntry: (e: AppLogEntry) => void;
}

function logsFailure(name: string, target: string, err: unknown): unknown {
  const why = cliErrorMessage(err);
  if (why === undefined) return err;
  if (APP_MISSING.test(why))
    return new DatabricksError(
      "app_not_found",
      `app ${name} does not exist: ${why}`,
      `run \`make bundle-deploy TARGET=${target}\` first`,
    );
  if (/does not have a public URL/.test(why))
    return new DatabricksError("no_app_url", why, `run \`make app-deploy TARGET=${target}\``);
  if (/bad handshake \(HTTP (30\d|401|403)/.test(why))
    return new DatabricksError(
      "logs_unauthorized",
      `the log stream of app ${name} refused the token: ${why}`,
      "use an OAuth profile (`databricks auth login --profile <profile>`); PATs are not accepted by the Apps proxy",
    );
  return new DatabricksError(
    "logs_unreachable",
    `could not open the log stream of app ${name}: ${why}`,
    "check that the app is deployed and running (`make app-status`), then try again",
  );
}

/**
 * `databricks apps logs <name> -o json [--follow] [--search S] [--tail-lines N]`, each entry handed to
 * `onEntry` once: after reopening a dropped stream the CLI prints what the server sends again, and the
 * entries already shown are skipped here (same time, source and text; none older than the newest seen).
 */
export async function readAppLogs(
  cli: DatabricksCli,
  name: string,
  target: string,
  options: LogReadOptions,
): Promise<{ entries: number; repeats: number }> {
  const seen = new Set<string>();
  let newest = Number.NEGATIVE_INFINITY;
  let entries = 0;
  let repeats = 0;
  const accept = (e: AppLogEntry) => {
    const key = `${e.timestamp}\u0000${e.source}\u0000${e.message}`;
    if (e.timestamp < newest || seen.has(key)) {
      repeats++;
      return;
    }
    if (e.timestamp > newest) {
      newest = e.timestamp;
      seen.clear();
    }
    seen.add(key);
    entries++;
    options.onEntry(e);
  };
  const args = [
    "apps",
    "logs",
    name,
    ...(options.follow ? ["--follow"] : []),
    ...(options.search ? ["--search", options.search] : []),
    ...(options.tail !== undefined ? ["--tail-lines", String(options.tail)] : []),
    "-o",
    "json",
  ];
  try {
    await cli.run(args, {
      signal: options.signal,
      bufferStdout: false,
      onLine: (line, stream) => {
        if (stream !== "stdout") return;
        try {
          const e = JSON.parse(line) as AppLogEntry;
          if (typeof e.message === "string") accept(e);
        } catch {
          // A frame that is no entry: the CLI prints it as it came.
          accept({ source: "", timestamp: 0, message: line });
        }
      },
    });
  } catch (err) {
    throw logsFailure(name, target, err);
  }
  return { entries, repeats };
}

/**
 * app-logs: the app's log stream through the CLI. The Apps proxy refuses personal access tokens, which
 * is said up front: following, the CLI would retry them without end.
 */
export async function appLogs(
  config: Config,
  log: Logger,
  options: LogReadOptions,
): Promise<{ entries: number; repeats: number }> {
  await oauthToken(await connectWorkspace(config));
  return await readAppLogs(cliFor(config, log), config.appName, config.target, options);
}
