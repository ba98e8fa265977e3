import type { Writable } from "node:stream";
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
  /**
   * The lines of one tick go out in one write (the stream corked until the next tick, and at exit). For loggers
   * that relay a child's many lines: stdout and stderr are synchronous pipes on Linux, one syscall per line.
   */
  coalesce?: boolean;
}

const flushedAtExit = new WeakSet<Writable>();

/** Writes to `stream`, the writes of one tick gathered into one (Writable.cork/uncork). */
function coalescingWrite(stream: NodeJS.WritableStream): (text: string) => void {
  const w = stream as Writable;
  if (typeof w.cork !== "function") return (text) => stream.write(text);
  if (!flushedAtExit.has(w)) {
    flushedAtExit.add(w);
    // A `process.exit()` in the same tick as a line (a fatal error) must not lose it.
    process.on("exit", () => {
      while (w.writableCorked > 0) w.uncork();
    });
  }
  let corked = false;
  return (text) => {
    if (!corked) {
      corked = true;
      w.cork();
      process.nextTick(() => {
        corked = false;
        w.uncork();
      });
    }
    w.write(text);
  };
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
function lineReporter(json: boolean, stream: NodeJS.WritableStream, coalesce: boolean): ConsolaReporter {
  const write = coalesce ? coalescingWrite(stream) : (text: string) => stream.write(text);
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
        write(`${JSON.stringify(line)}\n`);
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
      write(`${mark}${prefix}${message}\n`);
    },
  };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const logger = createConsola({
    level: options.level ?? 3,
    reporters: [lineReporter(options.json ?? false, stream, options.coalesce ?? false)],
  });
  return options.tag ? logger.withTag(options.tag) : logger;
}

/** A logger that drops everything, for library calls where the caller wants silence. */
export const silentLogger: Logger = createConsola({ level: -999, reporters: [] });
