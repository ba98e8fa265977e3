import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parse as parseDotenv } from "dotenv";
import { EXIT, UserError } from "../errors.js";
import { placeholderKind } from "../placeholders.js";
import { splitRepoCredentials } from "./repo-credentials.js";
import { unknownVariableWarnings } from "./unknown-variables.js";
import { type LakebaseKind, type Target, VARIABLES, type VariableDef } from "./variables.js";

export type ValueSource = "flag" | "env" | "dotenv" | "default" | "derived";

export interface ResolvedValue {
  value: string;
  source: ValueSource;
}

export interface Config {
  cwd: string;
  target: Target;
  /**
   * As given, credentials included (for git only: `prepare` splits them off). Its secret parts are registered
   * with the masking logger, and `values.METAMCP_REPO_URL` holds the credential-free form for display.
   */
  repoUrl: string;
  /** Empty: resolve the newest stable release. */
  ref: string;
  buildDir: string;
  appDir: string;
  schema: string;
  profile: string;
  databricksCli: string;
  appName: string;
  lakebase: {
    kind: LakebaseKind;
    create: boolean;
    project: string;
    branch: string;
    instanceName: string;
    /** The PostgreSQL database name (what PGDATABASE holds). */
    database: string;
    /** Autoscaling: the database's resource id, the last segment of its path. */
    databaseId: string;
  };
  secret: { scope: string; key: string };
  local: { stateDir: string; port: number };
  /** Every variable, its value and where it came from (for `config` and for rendering). */
  values: Record<string, ResolvedValue>;
  /** Lines for the user that do not stop the command (a misspelt variable name). */
  warnings: string[];
}

export interface LoadConfigInput {
  /** Values from CLI flags, keyed by the variable's `flag` name (e.g. `ref`, `build-dir`). */
  flags?: Record<string, string | undefined>;
  /** Process environment (pass `process.env`; tests pass their own). */
  env?: Record<string, string | undefined>;
  /** Project root: `.env` is read from here and relative paths resolve against it. */
  cwd?: string;
  /** `.env` file; default `<cwd>/.env`. */
  dotenvPath?: string;
}

function pick(
  def: VariableDef,
  flags: Record<string, string | undefined>,
  env: Record<string, string | undefined>,
  dotenv: Record<string, string>,
): { value: string; source: ValueSource } | undefined {
  const flag = def.flag ? flags[def.flag] : undefined;
  if (flag !== undefined) return { value: flag, source: "flag" };
  const fromEnv = env[def.env];
  if (fromEnv !== undefined && fromEnv !== "") return { value: fromEnv, source: "env" };
  const fromDotenv = dotenv[def.env];
  if (fromDotenv !== undefined && fromDotenv !== "") return { value: fromDotenv, source: "dotenv" };
  return undefined;
}

/**
 * An invalid configuration, with every problem and the values that were valid: `doctor` still runs the
 * checks those values allow, and lists the problems as one failed check.
 */
export class ConfigError extends UserError {
  constructor(
    readonly problems: string[],
    readonly validValues: Record<string, ResolvedValue>,
  ) {
    super(
      "invalid_config",
      `invalid configuration:\n  - ${problems.join("\n  - ")}`,
      EXIT.input,
      "fix the flag, environment variable or .env entry named above (see .env.template)",
    );
  }
}

/** The `.env` file's values; none when it is absent, a clear error when it is there but not a readable file. */
function readDotenv(file: string): Record<string, string> {
  if (!existsSync(file)) return {};
  try {
    if (!statSync(file).isFile())
      throw new UserError(
        "dotenv_not_a_file",
        `${file} is not a file (a folder?): the configuration is read from a .env FILE`,
        EXIT.input,
        `move it away (e.g. \`mv ${file} ${file}.d\`) and put KEY=value lines in a file ${file} (see .env.template)`,
      );
    return parseDotenv(readFileSync(file));
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(
      "dotenv_unreadable",
      `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      EXIT.input,
      "make it readable by you, or move it away",
    );
  }
}

/** Flags > environment > `.env` > defaults; every value validated, placeholders refused. */
export function loadConfig(input: LoadConfigInput = {}): Config {
  const cwd = path.resolve(input.cwd ?? process.cwd());
  const env = input.env ?? process.env;
  const flags = input.flags ?? {};
  const dotenvPath = input.dotenvPath ?? path.join(cwd, ".env");
  const dotenv = readDotenv(dotenvPath);

  const values: Record<string, ResolvedValue> = {};
  const problems: string[] = [];
  let target: Target = "dev";

  for (const def of VARIABLES) {
    let resolved = pick(def, flags, env, dotenv);
    if (!resolved && def.default !== undefined) {
      if (typeof def.default === "string") {
        resolved = { value: def.default, source: "default" };
      } else {
        const derived = def.default({ target, get: (name) => values[name]?.value });
        if (derived !== undefined) resolved = { value: derived, source: "derived" };
      }
    }
    if (!resolved) {
      problems.push(`${def.env} is not set (${def.description})`);
      continue;
    }
    if (def.env === "METAMCP_REPO_URL") splitRepoCredentials(resolved.value); // registers its secrets
    if (placeholderKind(resolved.value, "setting")) {
      problems.push(
        `${def.env} is still a placeholder (${JSON.stringify(resolved.value)}, from ${resolved.source}): set a real value`,
      );
      continue;
    }
    const parsed = def.schema.safeParse(resolved.value);
    if (!parsed.success) {
      const why = parsed.error.issues.map((i) => i.message).join("; ");
      // Named as the user gave it: the flag for a flag, the variable otherwise.
      const name = resolved.source === "flag" && def.flag ? `--${def.flag}` : def.env;
      problems.push(`${name}=${JSON.stringify(resolved.value)} (from ${resolved.source}) ${why}`);
      continue;
    }
    values[def.env] = { value: parsed.data, source: resolved.source };
    if (def.env === "TARGET") target = parsed.data as Target;
  }

  // A token in the repository URL (https://user:TOKEN@host/fork.git) is a secret: masked from the moment it
  // is read (see the loop), and the value every printer sees (`config`, doctor, templates) is the URL without
  // credentials. `repoUrl` keeps them for git.
  const repoValue = values.METAMCP_REPO_URL;
  const rawRepoUrl = repoValue?.value ?? "";
  if (repoValue) {
    const split = splitRepoCredentials(repoValue.value);
    if (split.url !== repoValue.value.trim()) values.METAMCP_REPO_URL = { ...repoValue, value: split.url };
  }

  // Checks across variables, each naming what to change.
  const val = (name: string) => values[name]?.value;
  if (val("LAKEBASE_KIND") === "provisioned" && val("LAKEBASE_CREATE") === "true") {
    problems.push(
      "LAKEBASE_KIND=provisioned with LAKEBASE_CREATE=true: new provisioned (legacy) instances cannot be created since 2026-03-12; set LAKEBASE_CREATE=false to attach an existing instance, or use LAKEBASE_KIND=autoscaling",
    );
  }
  if (
    val("LAKEBASE_KIND") === "autoscaling" &&
    val("LAKEBASE_CREATE") === "true" &&
    val("LAKEBASE_BRANCH") !== undefined &&
    val("LAKEBASE_BRANCH") !== "production"
  ) {
    problems.push(
      `LAKEBASE_BRANCH=${val("LAKEBASE_BRANCH")} with LAKEBASE_CREATE=true: a new Lakebase project has only the branch production; attach an existing project (LAKEBASE_CREATE=false) to use another branch`,
    );
  }

  // AI Playground lists apps named mcp-* and calls <app url>/mcp: that path needs an endpoint to answer it.
  if (val("APP_NAME")?.startsWith("mcp-") && !val("METAMCP_DEFAULT_ENDPOINT")) {
    problems.push(
      `APP_NAME=${val("APP_NAME")} starts with mcp- (AI Playground calls <app url>/mcp): set METAMCP_DEFAULT_ENDPOINT to the MetaMCP endpoint that answers there`,
    );
  }

  // The bundle schema: compute_min_instances "must be set together with" compute_max_instances.
  const [minI, maxI] = [val("APP_MIN_INSTANCES") ?? "", val("APP_MAX_INSTANCES") ?? ""];
  if ((minI === "") !== (maxI === ""))
    problems.push(
      `APP_MIN_INSTANCES=${JSON.stringify(minI)} and APP_MAX_INSTANCES=${JSON.stringify(maxI)}: set both (the platform takes them together), or neither for one instance`,
    );
  else if (minI !== "" && Number(minI) > Number(maxI))
    problems.push(
      `APP_MIN_INSTANCES=${minI} is above APP_MAX_INSTANCES=${maxI}: the fewest instances cannot exceed the most`,
    );

  if (problems.length > 0) throw new ConfigError(problems, values);

  const v = (name: string): string => values[name]!.value;
  return {
    cwd,
    target,
    repoUrl: rawRepoUrl,
    ref: v("METAMCP_REF"),
    buildDir: path.resolve(cwd, v("BUILD_DIR")),
    appDir: path.resolve(cwd, v("APP_DIR")),
    schema: v("METAMCP_DB_SCHEMA"),
    profile: v("DATABRICKS_CONFIG_PROFILE"),
    databricksCli: v("DATABRICKS_CLI"),
    appName: v("APP_NAME"),
    lakebase: {
      kind: v("LAKEBASE_KIND") as LakebaseKind,
      create: v("LAKEBASE_CREATE") === "true",
      project: v("LAKEBASE_PROJECT"),
      branch: v("LAKEBASE_BRANCH"),
      instanceName: v("LAKEBASE_INSTANCE_NAME"),
      database: v("LAKEBASE_DATABASE"),
      databaseId: v("LAKEBASE_DATABASE_ID"),
    },
    secret: { scope: v("SECRET_SCOPE"), key: v("SECRET_KEY") },
    local: { stateDir: path.resolve(cwd, v("LOCAL_STATE_DIR")), port: Number(v("LOCAL_PORT")) },
    values,
    warnings: unknownVariableWarnings(dotenv, dotenvPath, env),
  };
}
