import { type ConsolaInstance, type ConsolaReporter, createConsola, type LogObject } from "consola/core";
import { maskSecrets } from "./secrets.js";

export type Logger = ConsolaInstance;

export interface LoggerOptions {
  /** JSON lines instead of human format (for `--json`, pipelines and the app's log stream). */
  json?: boolean;
  /** consola level: 3 = info (default), 4 = debug. */
  level?: number;
  /** Where lines go. Defaults to stderr so stdout stays clean for command results. */
  stream?: NodeJS.WritableStream;
  /** Tag prefixed to every human line (e.g. the step name). */
  tag?: string;
}

function formatArgs(args: unknown[]): string {
  return args
    .map((a) => {
      if (a instanceof Error) return a.message;
      if (typeof a === "string") return a;
      try {
        return JSON.stringify(a);
      } catch {
        return String(a);
      }
    })
    .join(" ");
}

/** One line per log call, secrets masked, JSON or human. */
function lineReporter(json: boolean, stream: NodeJS.WritableStream): ConsolaReporter {
  return {
    log(obj: LogObject) {
      const message = maskSecrets(formatArgs(obj.args));
      if (json) {
        const line = {
          time: obj.date.toISOString(),
          level: obj.type,
          tag: obj.tag || undefined,
          msg: message,
        };
        stream.write(`${JSON.stringify(line)}\n`);
        return;
      }
      const prefix = obj.tag ? `[${obj.tag}] ` : "";
      const mark =
        obj.type === "error" || obj.type === "fatal"
          ? "✖ "
          : obj.type === "warn"
            ? "⚠ "
            : obj.type === "success"
              ? "✔ "
              : "";
      stream.write(`${mark}${prefix}${message}\n`);
    },
  };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const logger = createConsola({
    level: options.level ?? 3,
    reporters: [lineReporter(options.json ?? false, stream)],
  });
  return options.tag ? logger.withTag(options.tag) : logger;
}

/** A logger that drops everything, for library calls where the caller wants silence. */
export const silentLogger: Logger = createConsola({ level: -999, reporters: [] });
