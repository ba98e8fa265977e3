import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const DOUBLE = fileURLToPath(new URL("./databricks-double.mjs", import.meta.url));

export interface DoubleScenario {
  version: string;
  /** The emulator's workspace URL and a token the double's own REST calls use. */
  host: string;
  adminToken: string;
  /** What `databricks auth token --profile P` hands out; absent = not logged in. */
  userToken?: string;
  /** A new token per `auth token` call, in order (the last repeats); overrides userToken. */
  userTokens?: string[];
  /** The `expiry` `auth token` reports (default one hour). */
  userTokenTtlSeconds?: number;
  authTokenError?: boolean;
  bundleAuthError?: boolean;
  validateError?: string;
  deployError?: string;
  userName?: string;
  /** Who each profile signs in as, when not `userName` (a second developer of the workspace). */
  profileUsers?: Record<string, string>;
  /** The emulator's workspace files root (bundle sync copies the synced paths there). */
  fsRoot: string;
  /** Targets whose existing deployment state is terraform's. */
  terraformState?: Record<string, boolean>;
  /** How long the double's apps waiters (start, deployment) poll before they give up (the CLI's: 20 min). */
  deployTimeoutMs?: number;
  /** Between the double's apps waiter polls (default 250 ms; the Go SDK starts at 1 s). */
  pollMs?: number;
}

export interface DoubleCall {
  argv: string[];
  cwd: string;
  profileEnv: string | null;
}

/**
 * Puts a `databricks` contract double first on PATH (a bin dir with a wrapper script) and keeps
 * its scenario, state and recorded calls in `dir`.
 */
export class DatabricksCliDouble {
  readonly binDir: string;
  constructor(
    readonly dir: string,
    scenario: DoubleScenario,
  ) {
    this.binDir = path.join(dir, "bin");
    mkdirSync(this.binDir, { recursive: true });
    const wrapper = path.join(this.binDir, "databricks");
    writeFileSync(wrapper, `#!/bin/sh\nexec "${process.execPath}" "${DOUBLE}" "$@"\n`);
    chmodSync(wrapper, 0o755);
    this.setScenario(scenario);
  }

  setScenario(scenario: DoubleScenario): void {
    writeFileSync(path.join(this.dir, "scenario.json"), JSON.stringify(scenario, null, 2));
  }

  scenario(): DoubleScenario {
    return JSON.parse(readFileSync(path.join(this.dir, "scenario.json"), "utf8")) as DoubleScenario;
  }

  update(patch: Partial<DoubleScenario>): void {
    this.setScenario({ ...this.scenario(), ...patch });
  }

  /** Environment for the product under test: the double first on PATH, its state dir. */
  env(): Record<string, string> {
    return { PATH: `${this.binDir}:${process.env.PATH ?? ""}`, DBX_DOUBLE_DIR: this.dir };
  }

  calls(): DoubleCall[] {
    const file = path.join(this.dir, "calls.jsonl");
    if (!existsSync(file)) return [];
    return readFileSync(file, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as DoubleCall);
  }

  /** Calls other than `version` (checked on every command). */
  commands(): string[][] {
    return this.calls()
      .map((c) => c.argv)
      .filter((a) => a[0] !== "version");
  }

  clearCalls(): void {
    writeFileSync(path.join(this.dir, "calls.jsonl"), "");
  }
}
