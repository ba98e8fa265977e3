import type { Logger } from "./logger.js";

/**
 * A pipeline as a list of steps (sindresorhus/np's listr tasks without the dependency): each step's title
 * is its progress line, a skipped step says so and why. Core, so the in-app runtime uses it too.
 */
export interface Step<C> {
  title: string;
  /** Why this step is left out this time (said in the progress output); nothing or false runs it. */
  skip?: (ctx: C) => string | false | undefined;
  task: (ctx: C) => Promise<void> | void;
}

/** Where the progress goes: the log of a command, the app's log, or nowhere. */
export interface StepProgress {
  started(title: string): void;
  done(title: string, ms: number): void;
  skipped(title: string, reason: string): void;
}

/** `title…`, `title: done in N ms`, `title: skipped, reason` at `info` (or another level). */
export function logProgress(log: Logger, level: "info" | "debug" = "info"): StepProgress {
  return {
    started: (title) => log[level](`${title}…`),
    done: (title, ms) => log[level](`${title}: done in ${ms} ms`),
    skipped: (title, reason) => log[level](`${title}: skipped, ${reason}`),
  };
}

export interface RunStepsOptions {
  progress: StepProgress;
  /** Checked before each step: once aborted, no further step starts (its reason is thrown). */
  signal?: AbortSignal;
}

/** Runs `steps` in order on one shared context; the first step that throws ends the run with its error. */
export async function runSteps<C>(steps: readonly Step<C>[], ctx: C, options: RunStepsOptions): Promise<C> {
  for (const step of steps) {
    options.signal?.throwIfAborted();
    const reason = step.skip?.(ctx);
    if (reason) {
      options.progress.skipped(step.title, reason);
      continue;
    }
    const t0 = performance.now();
    options.progress.started(step.title);
    await step.task(ctx);
    options.progress.done(step.title, Math.round(performance.now() - t0));
  }
  return ctx;
}
