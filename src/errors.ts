/**
 * Errors are values: a message for humans, a stable code for scripts, and an exit code.
 * Exit codes: 2 bad input, 3 upstream drift, 4 Databricks-side failure, 5 the local app is not running
 * (`local status`/`local token` with nothing to show), 1 bugs (anything not a UserError).
 */
export type ExitCode = 1 | 2 | 3 | 4 | 5 | 6;

export const EXIT = {
  bug: 1,
  input: 2,
  drift: 3,
  databricks: 4,
  notRunning: 5,
  /** The local app runs but its health check fails (`local status`). */
  unhealthy: 6,
} as const satisfies Record<string, ExitCode>;

export class UserError extends Error {
  override readonly name = "UserError";
  constructor(
    /** Stable, machine-readable code, e.g. `ref_not_found`. */
    readonly code: string,
    message: string,
    readonly exitCode: ExitCode = EXIT.input,
    /** What the user should do next, printed under the message. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Upstream moved: a patch or expectation no longer matches the MetaMCP tree (exit 3). */
export class DriftError extends UserError {
  constructor(code: string, message: string, hint?: string) {
    super(code, message, EXIT.drift, hint);
  }
}

/** The Databricks side refused or failed (exit 4). */
export class DatabricksError extends UserError {
  constructor(code: string, message: string, hint?: string, options?: { cause?: unknown }) {
    super(code, message, EXIT.databricks, hint, options);
  }
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}
