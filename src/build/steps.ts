import { createInterface } from "node:readline";
import { execa } from "execa";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";

/** How many output lines a failed step shows. */
export const FAILURE_TAIL_LINES = 50;

export interface StepSpec {
  /** Short name shown as the line prefix and in errors, e.g. `install`, `build`, `deploy-backend`. */
  name: string;
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string | undefined>;
  /**
   * Output lines known to be harmless for this step: not relayed one by one (they read like a failure
   * to the person watching) but counted and explained in one line at the end. They still count in the
   * failure tail, so nothing is hidden when the step fails.
   */
  expected?: { pattern: RegExp; explain: (count: number) => string };
}

export interface StepResult {
  name: string;
  durationMs: number;
}

function elapsed(start: number): string {
  return `${((performance.now() - start) / 1000).toFixed(1)}s`;
}

/**
 * Runs one build step, streaming every output line live as `[step +12.3s] line` through the logger.
 * On a non-zero exit it throws a UserError naming the step and its exit code, with the last
 * {@link FAILURE_TAIL_LINES} lines of its output (exit 3: the prepared upstream tree does not install or
 * build, usually because upstream or a patch moved).
 */
export async function runStep(spec: StepSpec, log: Logger): Promise<StepResult> {
  const start = performance.now();
  const tail: string[] = [];
  log.info(`[${spec.name}] $ ${[spec.command, ...spec.args].join(" ")}`);
  const child = execa(spec.command, spec.args, {
    cwd: spec.cwd,
    // The step's environment exactly (the build chose what reaches upstream's scripts).
    env: spec.env,
    extendEnv: false,
    stdin: "ignore",
    // Streamed line by line below; the tail kept there is all a failure shows.
    buffer: false,
    reject: false,
  });
  let expectedCount = 0;
  const onLine = (line: string) => {
    tail.push(line);
    if (tail.length > FAILURE_TAIL_LINES) tail.shift();
    if (spec.expected?.pattern.test(line)) {
      expectedCount++;
      return;
    }
    log.info(`[${spec.name} +${elapsed(start)}] ${line}`);
  };
  const streamsDone = [child.stdout, child.stderr].map(
    (stream) =>
      new Promise<void>((resolve) => {
        const rl = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
        rl.on("line", onLine);
        rl.on("close", resolve);
      }),
  );
  const r = await child;
  await Promise.all(streamsDone);
  const exit = {
    code: r.exitCode ?? null,
    signal: r.signal ?? null,
    error:
      r.failed && r.exitCode === undefined && !r.signal ? (r.originalMessage ?? r.shortMessage) : undefined,
  };
  const durationMs = Math.round(performance.now() - start);
  if (exit.error) {
    throw new UserError(
      "build_step_failed",
      `step \`${spec.name}\` could not start \`${spec.command}\`: ${exit.error}`,
      EXIT.input,
      "check that Node.js and npx are on PATH",
    );
  }
  if (exit.code !== 0) {
    const how = exit.signal ? `was killed by ${exit.signal}` : `failed with exit code ${exit.code}`;
    throw new UserError(
      "build_step_failed",
      `step \`${spec.name}\` ${how} after ${(durationMs / 1000).toFixed(1)}s. Last ${tail.length} lines:\n${tail
        .map((l) => `    ${l}`)
        .join("\n")}`,
      EXIT.drift,
      `fix the cause above and run \`metamcp-databricks build\` again (cwd: ${spec.cwd})`,
    );
  }
  if (spec.expected && expectedCount > 0) log.info(`[${spec.name}] ${spec.expected.explain(expectedCount)}`);
  log.info(`[${spec.name}] done in ${(durationMs / 1000).toFixed(1)}s`);
  return { name: spec.name, durationMs };
}
