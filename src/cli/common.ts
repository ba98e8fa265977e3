import type { Command } from "commander";
import type { Config } from "../config/load.js";
import { EXIT, isUserError, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { maskDeep, maskSecrets } from "../log/secrets.js";

/** Options every command accepts (declared on the root program). */
export interface GlobalOptions {
  json?: boolean;
  debug?: boolean;
  target?: string;
  profile?: string;
}

export interface CommandContext {
  globals: GlobalOptions;
  log: Logger;
  /** Loads the one configuration with this command's flags on top. */
  config(flags?: Record<string, string | undefined>): Config;
  /** Prints the command's result: JSON on stdout with --json, else the human text. */
  result(value: unknown, human?: string | (() => string)): void;
  /** Prints a human line on stdout (ignored with --json). */
  print(line: string): void;
}

/**
 * The context of a running command. The config loader (zod, dotenv) and the logger load here, when a
 * command runs, never when help lists the commands.
 */
export async function makeContext(cmd: Command): Promise<CommandContext> {
  const [{ loadConfig }, { createLogger }] = await Promise.all([
    import("../config/load.js"),
    import("../log/logger.js"),
  ]);
  const globals = cmd.optsWithGlobals<GlobalOptions>();
  const log = createLogger({ json: globals.json ?? false, level: globals.debug ? 4 : 3 });
  const warned = new Set<string>();
  return {
    globals,
    log,
    config(flags = {}) {
      const config = loadConfig({
        flags: { target: globals.target, profile: globals.profile, ...flags },
        env: process.env,
      });
      for (const w of config.warnings.filter((w) => !warned.has(w))) {
        warned.add(w);
        log.warn(w);
      }
      return config;
    },
    result(value, human) {
      if (globals.json) {
        process.stdout.write(`${JSON.stringify(maskDeep(value), null, 2)}\n`);
        return;
      }
      const text = typeof human === "function" ? human() : human;
      if (text !== undefined) process.stdout.write(`${maskSecrets(text)}\n`);
    },
    print(line) {
      if (!globals.json) process.stdout.write(`${maskSecrets(line)}\n`);
    },
  };
}

/** The one error handler: user errors print message + hint and their exit code; bugs print a stack. */
export function reportError(err: unknown, globals: GlobalOptions): number {
  if (isUserError(err)) {
    if (globals.json) {
      process.stdout.write(
        `${JSON.stringify(maskDeep({ error: { code: err.code, message: err.message, hint: err.hint } }), null, 2)}\n`,
      );
    }
    process.stderr.write(`${maskSecrets(`error: ${err.message}`)}\n`);
    if (err.hint) process.stderr.write(`${maskSecrets(`  → ${err.hint}`)}\n`);
    if (globals.debug && err.stack) process.stderr.write(`${maskSecrets(err.stack)}\n`);
    return err.exitCode;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  process.stderr.write(`${maskSecrets(`internal error: ${e.message}`)}\n`);
  process.stderr.write(`${maskSecrets(e.stack ?? "")}\n`);
  process.stderr.write("  → this is a bug in metamcp-databricks: please report it with the output above\n");
  return EXIT.bug;
}

/**
 * Wraps a command action: builds the context, runs it, maps errors to exit codes.
 * The action may return an exit code (default 0).
 */
export function action<A extends unknown[]>(
  fn: (ctx: CommandContext, ...args: A) => unknown,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const ctx = await makeContext(cmd);
    try {
      const code = await fn(ctx, ...(args.slice(0, -1) as A));
      process.exitCode = typeof code === "number" ? code : 0;
    } catch (err) {
      process.exitCode = reportError(err, ctx.globals);
    }
  };
}

/** A `--timeout`-style flag: a positive number of seconds, or one message naming the flag. */
export function positiveSeconds(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new UserError("invalid_option", `${name} must be a positive number of seconds`, EXIT.input);
  return n;
}
