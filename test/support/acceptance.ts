import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { parse as parseToml } from "smol-toml";
import { CLI_BIN, PROJECT_ROOT } from "./cli.js";
import { expectRecorded } from "./golden.js";

/**
 * Acceptance cases, as the Databricks CLI's own `acceptance/` runs them: a case is a folder under
 * test/acceptance/ holding a `script` (bash, `$CLI ...` is our built binary) and `output.txt` (what the
 * script printed, stdout and stderr interleaved as a terminal shows them, with `Exit code: N` for failing
 * commands and placeholders such as [TMPDIR] for what varies between runs). Optional `test.toml` files,
 * read from test/acceptance/ down to the case (inner ones win), set:
 *   Fixtures = ["upstream"]   things the runner makes before the script (see `FIXTURES`)
 *   RequiresShared = true     skipped (saying so) without ../shared
 *   Env.NAME = "value"        extra environment
 *   [[Repls]] Old = 're' New = '[NAME]'   extra placeholders (regex, applied after the built-in ones)
 * Every other file in the case folder is copied into the case's fresh temp dir, where the script runs.
 * `test/acceptance/script.prepare` is sourced first: `trace`, `errcode`, `musterr`, `title`.
 * A missing or different output.txt fails unless UPDATE_GOLDEN=1, which (re)records it.
 */
export const ACCEPTANCE_ROOT = path.join(PROJECT_ROOT, "test/acceptance");
const SHARED_DIR = path.resolve(PROJECT_ROOT, "../shared");

export interface Replacement {
  old: RegExp | string;
  new: string;
}

export interface CaseConfig {
  fixtures: string[];
  requiresShared: boolean;
  env: Record<string, string>;
  repls: Replacement[];
  timeoutMs: number;
}

export interface AcceptanceCase {
  /** Path under test/acceptance, e.g. `prepare/missing-ref`. */
  name: string;
  dir: string;
  config: CaseConfig;
  /** Why the case cannot run here, or undefined. */
  skip?: string;
}

/** A fixture the runner makes once per run (shared by the cases that ask for it). */
export interface Fixture {
  env: Record<string, string>;
  repls: Replacement[];
}

/** Every folder under `root` with a `script` is a case; sorted, so runs are stable. */
export function discoverCases(root = ACCEPTANCE_ROOT): AcceptanceCase[] {
  const cases: AcceptanceCase[] = [];
  const walk = (dir: string) => {
    const entries = readdirSync(dir, { withFileTypes: true });
    if (dir !== root && entries.some((e) => e.isFile() && e.name === "script")) {
      const config = loadConfig(root, dir);
      const name = path.relative(root, dir).split(path.sep).join("/");
      const skip =
        config.requiresShared && !existsSync(SHARED_DIR) ? `no ../shared at ${SHARED_DIR}` : undefined;
      cases.push({ name, dir, config, skip });
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
  };
  walk(root);
  return cases.sort((a, b) => a.name.localeCompare(b.name));
}

function loadConfig(root: string, dir: string): CaseConfig {
  const config: CaseConfig = { fixtures: [], requiresShared: false, env: {}, repls: [], timeoutMs: 60_000 };
  const chain: string[] = [];
  for (let d = dir; d.startsWith(root); d = path.dirname(d)) chain.unshift(d);
  for (const d of chain) {
    const file = path.join(d, "test.toml");
    if (!existsSync(file)) continue;
    const t = parseToml(readFileSync(file, "utf8")) as {
      Fixtures?: string[];
      RequiresShared?: boolean;
      Env?: Record<string, string>;
      Repls?: { Old: string; New: string }[];
      TimeoutSeconds?: number;
    };
    const known = new Set(["Fixtures", "RequiresShared", "Env", "Repls", "TimeoutSeconds"]);
    const unknown = Object.keys(t).filter((k) => !known.has(k));
    if (unknown.length) throw new Error(`${file}: unknown setting(s) ${unknown.join(", ")}`);
    if (t.Fixtures) config.fixtures = [...new Set([...config.fixtures, ...t.Fixtures])];
    if (t.RequiresShared !== undefined) config.requiresShared = t.RequiresShared;
    if (t.Env) Object.assign(config.env, t.Env);
    for (const r of t.Repls ?? []) config.repls.push({ old: new RegExp(r.Old, "g"), new: r.New });
    if (t.TimeoutSeconds) config.timeoutMs = t.TimeoutSeconds * 1000;
  }
  return config;
}

const PACKAGE_VERSION = (
  JSON.parse(readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")) as { version: string }
).version;

/**
 * Placeholders for what differs between runs and machines, applied in order: paths first (longest
 * first, so the case dir wins over /tmp), then shapes. Upstream's fixed ports 12008/12009 stay: they are
 * part of what the CLI says.
 */
export function builtinReplacements(caseDir: string): Replacement[] {
  const paths: Replacement[] = [
    { old: caseDir, new: "[TMPDIR]" },
    { old: realpathSync(caseDir), new: "[TMPDIR]" },
    { old: CLI_BIN, new: "[CLI]" },
    { old: PROJECT_ROOT, new: "[TOOL]" },
  ];
  return [
    ...paths,
    { old: /\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\b/g, new: "[TIMESTAMP]" },
    { old: /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, new: "[UUID]" },
    { old: /\b[0-9a-f]{40}\b/g, new: "[SHA]" },
    { old: /\b[0-9a-f]{12}\b/g, new: "[SHORT_SHA]" },
    { old: /\b\d+(\.\d+)?m?s\b/g, new: "[DURATION]" },
    { old: /\b(127\.0\.0\.1|localhost):(?!1200[89]\b)\d{2,5}\b/g, new: "$1:[PORT]" },
    { old: new RegExp(`\\b${escapeRegExp(process.version)}\\b`, "g"), new: "[NODE_VERSION]" },
    { old: new RegExp(`(?<![\\d.])${escapeRegExp(PACKAGE_VERSION)}(?![\\d.])`, "g"), new: "[VERSION]" },
  ];
}

export function applyReplacements(text: string, repls: Replacement[]): string {
  let out = text;
  for (const r of repls)
    out = typeof r.old === "string" ? out.replaceAll(r.old, r.new) : out.replace(r.old, r.new);
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Runs one case in `workDir` (fresh, empty, removed by the caller) and returns its normalised output.
 * The environment is built from nothing: PATH, a HOME inside the work dir (no host config leaks in), git's
 * identity, NO_COLOR, what the fixtures and test.toml add.
 */
export async function runCase(
  c: AcceptanceCase,
  workDir: string,
  fixtures: Record<string, Fixture>,
): Promise<string> {
  for (const entry of readdirSync(c.dir)) {
    if (entry === "script" || entry === "output.txt" || entry === "test.toml") continue;
    cpSync(path.join(c.dir, entry), path.join(workDir, entry), { recursive: true });
  }
  const home = path.join(workDir, ".home");
  mkdirSync(home);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    LANG: "C.UTF-8",
    NO_COLOR: "1",
    GIT_AUTHOR_NAME: "test",
    GIT_AUTHOR_EMAIL: "test@example.invalid",
    GIT_COMMITTER_NAME: "test",
    GIT_COMMITTER_EMAIL: "test@example.invalid",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_TERMINAL_PROMPT: "0",
    CLI: CLI_BIN,
  };
  const repls: Replacement[] = [];
  for (const name of c.config.fixtures) {
    const f = fixtures[name];
    if (!f)
      throw new Error(`${c.name}: unknown fixture "${name}" (known: ${Object.keys(fixtures).join(", ")})`);
    Object.assign(env, f.env);
    repls.push(...f.repls);
  }
  Object.assign(env, c.config.env);
  const prepare = path.join(ACCEPTANCE_ROOT, "script.prepare");
  // One pipe for both streams (exec 2>&1): the recorded order is the order a person sees.
  const result = await execa(
    "bash",
    [
      "-c",
      'exec 2>&1; set -euo pipefail; source "$1"; source "$2"',
      "acceptance",
      prepare,
      path.join(c.dir, "script"),
    ],
    {
      cwd: workDir,
      env,
      extendEnv: false,
      reject: false,
      stdin: "ignore",
      stripFinalNewline: false,
      timeout: c.config.timeoutMs,
    },
  );
  let output = String(result.stdout);
  if (result.timedOut) output += `\nTimed out after ${c.config.timeoutMs} ms\n`;
  else if (result.exitCode !== 0) output += `\nExit code: ${result.exitCode}\n`;
  // Case-specific placeholders first (they know more, e.g. the upstream's path inside the temp dir).
  return applyReplacements(output, [...repls, ...c.config.repls, ...builtinReplacements(workDir)]);
}

/** Compares (or with UPDATE_GOLDEN=1 records) a case's output.txt. */
export function expectCaseOutput(c: AcceptanceCase, output: string, update?: boolean): void {
  expectRecorded(path.join(c.dir, "output.txt"), output, { what: `acceptance case ${c.name}`, update });
}
