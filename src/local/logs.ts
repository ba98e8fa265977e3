import { createReadStream, existsSync, statSync, watch } from "node:fs";
import type { Config } from "../config/load.js";
import { EXIT, UserError } from "../errors.js";
import { localPaths } from "./state.js";

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** consola's types on the four levels a reader filters by. */
const TYPE_LEVEL: Record<string, LogLevel> = {
  trace: "debug",
  verbose: "debug",
  debug: "debug",
  warn: "warn",
  error: "error",
  fatal: "error",
};

/**
 * The level of one line of local.log: the app's and a --json supervisor's JSON lines carry it; the human
 * format marks warnings and errors (src/log/logger.ts); anything else (a child's raw output) is info.
 */
export function logLineLevel(line: string): LogLevel {
  if (line.startsWith("{")) {
    try {
      const type = (JSON.parse(line) as { level?: unknown }).level;
      if (typeof type === "string") return TYPE_LEVEL[type] ?? "info";
    } catch {
      // not one of our JSON lines
    }
  }
  if (line.startsWith("✖ ")) return "error";
  if (line.startsWith("⚠ ")) return "warn";
  return "info";
}

/** Prints the app's log file through `write` (the CLI's stdout), then follows it until Ctrl-C. */
export async function localLogs(
  config: Config,
  write: (text: string) => void,
  follow: boolean,
  minLevel: LogLevel = "debug",
): Promise<number> {
  const paths = localPaths(config.local.stateDir);
  if (!existsSync(paths.logFile)) {
    throw new UserError(
      "no_local_logs",
      `no local logs yet (${paths.logFile})`,
      EXIT.input,
      "start the app with `make local ARGS=--detach`",
    );
  }
  const min = LOG_LEVELS.indexOf(minLevel);
  // A chunk may end mid-line: the rest waits for the next chunk, so each line is judged whole.
  let partial = "";
  const emit = (text: string, flush: boolean) => {
    if (min === 0) return write(text);
    const lines = (partial + text).split("\n");
    partial = flush ? "" : (lines.pop() ?? "");
    const kept = lines.filter((l) => l !== "" && LOG_LEVELS.indexOf(logLineLevel(l)) >= min);
    if (kept.length) write(`${kept.join("\n")}\n`);
  };
  let offset = 0;
  const printFrom = async () => {
    const size = statSync(paths.logFile).size;
    if (size < offset) offset = 0;
    if (size === offset) return;
    const stream = createReadStream(paths.logFile, { start: offset, end: size - 1 });
    for await (const chunk of stream) emit(String(chunk), false);
    offset = size;
  };
  await printFrom();
  if (!follow) {
    emit("", true);
    return 0;
  }
  await new Promise<void>((resolve) => {
    const watcher = watch(paths.logFile, () => void printFrom());
    process.once("SIGINT", () => {
      watcher.close();
      resolve();
    });
  });
  return 0;
}
