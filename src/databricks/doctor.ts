import path from "node:path";
import { execa } from "execa";
import semver from "semver";
import { type Config, ConfigError } from "../config/load.js";
import type { Target } from "../config/variables.js";
import { EXIT, isUserError, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { runSteps, type Step } from "../log/steps.js";
import { appAccess, describePrincipals } from "./access.js";
import { DatabricksCli } from "./cli.js";
import { MIN_CLI_VERSION } from "./cli-version.js";
import { cliFor } from "./deployments.js";
import { withDevNames } from "./dev-user.js";
import { checkLakebase } from "./lakebase.js";
import { renderBundle } from "./render.js";
import { type BundleState, checkTakenNames, readBundleState } from "./taken-names.js";
import {
  appsProxyAuthRefusal,
  connectWorkspace,
  declaredAuthType,
  loginHint,
  type Workspace,
} from "./workspace.js";

export interface Check {
  name: string;
  ok: boolean;
  /** What was found (version, user, names). */
  detail: string;
  /** What to do when it failed. */
  fix?: string;
  skipped?: boolean;
  /** A failure on the workspace's side (taken name, Lakebase not offered): bundle-deploy exits 4, not 2. */
  databricksSide?: boolean;
}

/** Where the bundle lives and how to read its deployment state (called once the CLI and workspace work). */
export interface BundleProbe {
  bundleDir: string;
  state: () => Promise<BundleState>;
}

export interface DoctorReport {
  ok: boolean;
  checks: Check[];
  /** The connected workspace when the profile works (bundle-deploy reuses it). */
  workspace?: Workspace;
}

const MIN_NODE = "20.0.0";

function networkFix(profile: string): string {
  return `check the host of profile ${profile} and your network`;
}

function notChecked(name: string, why: string): Check {
  return { name, ok: false, skipped: true, detail: `not checked: ${why}` };
}

function failure(name: string, err: unknown, fallbackFix: string): Check {
  const e = err as Error & { hint?: string };
  return {
    name,
    ok: false,
    detail: (e.message ?? String(err)).split("\n")[0] ?? "",
    fix: isUserError(err) && e.hint ? e.hint : fallbackFix,
  };
}

/**
 * A configuration that failed to load: its problems, and the profile and CLI path when those were valid,
 * so the other checks still run.
 */
export interface InvalidConfig {
  invalid: true;
  problems: string[];
  hint?: string;
  profile?: string;
  databricksCli?: string;
}

/** What the checks so far found, for the ones after them. */
interface DoctorContext {
  checks: Check[];
  workspace?: Workspace;
  /** The profile's host did not answer: the workspace line says so. */
  unreachable?: unknown;
}

const passed = (ctx: DoctorContext, name: string) => ctx.checks.find((c) => c.name === name)?.ok === true;

/** Everything the Databricks steps need, one line each, with the fix for each failure. */
export async function runDoctor(
  config: Config | InvalidConfig,
  cli: DatabricksCli | undefined,
  otherTarget?: Config,
  /** The bundle as it will be deployed: its deployment state tells our names from taken ones. */
  bundle?: BundleProbe,
): Promise<DoctorReport> {
  const profile = config.profile;
  const databricksCli = config.databricksCli;
  // Each step's title is its line of the report; a skipped step is a line saying why it was not checked.
  const steps: Step<DoctorContext>[] = [
    {
      title: "git",
      task: async ({ checks }) => {
        const git = await execa("git", ["--version"], { reject: false }).catch(() => undefined);
        checks.push(
          git && git.exitCode === 0
            ? { name: "git", ok: true, detail: String(git.stdout).trim() }
            : {
                name: "git",
                ok: false,
                detail: "git was not found",
                fix: "install git (e.g. `apt-get install git`)",
              },
        );
      },
    },
    {
      title: "node",
      task: ({ checks }) => {
        const node = process.versions.node;
        checks.push(
          semver.gte(node, MIN_NODE)
            ? { name: "node", ok: true, detail: `Node ${node}` }
            : { name: "node", ok: false, detail: `Node ${node}`, fix: `install Node ${MIN_NODE} or later` },
        );
      },
    },
    {
      title: "databricks-cli",
      skip: () => !cli && "DATABRICKS_CLI is invalid (see names)",
      task: async ({ checks }) => {
        try {
          const v = await cli!.requireVersion();
          checks.push({
            name: "databricks-cli",
            ok: true,
            detail: `Databricks CLI ${v} (>= ${MIN_CLI_VERSION})`,
          });
        } catch (err) {
          checks.push(
            failure("databricks-cli", err, `install the Databricks CLI ${MIN_CLI_VERSION} or later`),
          );
        }
      },
    },
    {
      title: "profile",
      skip: () =>
        (profile === undefined || databricksCli === undefined) &&
        "DATABRICKS_CONFIG_PROFILE or DATABRICKS_CLI is invalid (see names)",
      task: async (ctx) => {
        const login = { profile: profile!, databricksCli: databricksCli! };
        // Refused before signing in: an Entra profile would otherwise ask Entra ID for a token first.
        const declared = await declaredAuthType(login);
        const refusedUpFront = appsProxyAuthRefusal(login.profile, declared.host, declared.authType);
        try {
          if (refusedUpFront) throw refusedUpFront;
          const workspace = await connectWorkspace(login);
          // The SDK may pick an Entra login itself (an Azure host with `az` signed in).
          const refused = appsProxyAuthRefusal(login.profile, workspace.host, workspace.authType);
          if (refused) throw refused;
          ctx.workspace = workspace;
          ctx.checks.push({
            name: "profile",
            ok: true,
            detail: `profile ${login.profile}: ${workspace.host} (${workspace.authType})`,
          });
        } catch (err) {
          if (isUserError(err) && err.code === "workspace_unreachable") {
            // The login cannot be judged when the host does not answer: the fault is the workspace's line.
            ctx.unreachable = err;
            ctx.checks.push(notChecked("profile", "the workspace did not answer"));
          } else ctx.checks.push(failure("profile", err, loginHint(login.profile)));
        }
      },
    },
    {
      title: "workspace",
      skip: (ctx) =>
        !ctx.workspace &&
        !ctx.unreachable &&
        (ctx.checks.find((c) => c.name === "profile")?.skipped ? "no usable profile" : "no working profile"),
      task: async (ctx) => {
        if (ctx.unreachable) {
          ctx.checks.push(failure("workspace", ctx.unreachable, networkFix(profile!)));
          return;
        }
        const workspace = ctx.workspace!;
        try {
          const me = await workspace.client.currentUser.me();
          ctx.checks.push({
            name: "workspace",
            ok: true,
            detail: `reachable, signed in as ${me.userName ?? me.id}`,
          });
        } catch (err) {
          ctx.checks.push(failure("workspace", err, networkFix(workspace.profile)));
        }
      },
    },
    ...("invalid" in config ? [invalidNamesStep(config)] : configSteps(config, cli, otherTarget, bundle)),
  ];
  const ctx: DoctorContext = { checks: [] };
  await runSteps(steps, ctx, {
    progress: {
      started: () => {},
      done: () => {},
      skipped: (title, why) => ctx.checks.push(notChecked(title, why)),
    },
  });
  return { ok: ctx.checks.every((c) => c.ok), checks: ctx.checks, workspace: ctx.workspace };
}

function invalidNamesStep(config: InvalidConfig): Step<DoctorContext> {
  return {
    title: "names",
    task: ({ checks }) =>
      void checks.push({
        name: "names",
        ok: false,
        detail: `invalid configuration: ${config.problems.join("; ")}`,
        fix: config.hint ?? "fix the variables named above (see .env.template)",
      }),
  };
}

/** The checks that need a configuration that loaded. */
function configSteps(
  config: Config,
  cli: DatabricksCli | undefined,
  otherTarget: Config | undefined,
  bundle: BundleProbe | undefined,
): Step<DoctorContext>[] {
  const steps: Step<DoctorContext>[] = [
    {
      title: "names",
      task: ({ checks }) => {
        const names = `app ${config.appName}, ${
          config.lakebase.kind === "autoscaling"
            ? `Lakebase project ${config.lakebase.project}/${config.lakebase.branch}`
            : `Lakebase instance ${config.lakebase.instanceName}`
        }, database ${config.lakebase.database}, schema ${config.schema}, secret ${config.secret.scope}/${config.secret.key}`;
        checks.push(
          otherTarget && otherTarget.appName === config.appName
            ? {
                name: "names",
                ok: false,
                detail: `${names}: dev and prod would share app ${config.appName}`,
                fix: "unset APP_NAME and set APP_BASE_NAME, so each target derives its own names",
              }
            : { name: "names", ok: true, detail: `${names} (target ${config.target})` },
        );
      },
    },
    {
      title: "access",
      task: ({ checks }) => {
        const access = appAccess(config);
        checks.push({
          name: "access",
          ok: true,
          detail:
            access.canManage.length + access.canUse.length === 0
              ? `only you (the deployer) and workspace admins can open app ${config.appName}: set APP_CAN_USE / APP_CAN_MANAGE to share it`
              : `app ${config.appName} opens for you and ${[
                  access.canManage.length ? `CAN_MANAGE: ${describePrincipals(access.canManage)}` : "",
                  access.canUse.length ? `CAN_USE: ${describePrincipals(access.canUse)}` : "",
                ]
                  .filter(Boolean)
                  .join("; ")}`,
        });
      },
    },
    {
      title: "lakebase",
      skip: (ctx) => !(ctx.workspace && passed(ctx, "workspace")) && "no working workspace",
      task: async ({ checks, workspace }) => {
        try {
          const lb = await checkLakebase(workspace!, config);
          checks.push({
            name: "lakebase",
            ok: lb.ok,
            detail: lb.detail,
            ...(lb.fix ? { fix: lb.fix } : {}),
            ...(lb.databricksSide ? { databricksSide: true } : {}),
          });
        } catch (err) {
          checks.push(failure("lakebase", err, "check the Lakebase settings in .env (see .env.template)"));
        }
      },
    },
  ];
  if (!bundle) return steps;
  // The state is read through the CLI: only with one that works and is new enough.
  const takenNames: Step<DoctorContext> = {
    title: "taken-names",
    skip: (ctx) =>
      !(cli && ctx.workspace && passed(ctx, "workspace") && passed(ctx, "databricks-cli")) &&
      "no working workspace or Databricks CLI",
    task: async ({ checks, workspace }) => {
      try {
        const state = await bundle.state();
        const taken = await checkTakenNames(workspace!, config, state, bundle.bundleDir);
        checks.push({
          name: "taken-names",
          ok: taken.ok,
          detail: taken.detail,
          ...(taken.fix ? { fix: taken.fix, databricksSide: true } : {}),
        });
      } catch (err) {
        checks.push({
          ...failure("taken-names", err, "run `make doctor` again; if it persists, check the bundle"),
          // `bundle summary` refused by the workspace (e.g. a login the CLI lacks) is the workspace's side.
          ...(err instanceof UserError && err.exitCode === EXIT.databricks ? { databricksSide: true } : {}),
        });
      }
    },
  };
  return [...steps, takenNames];
}

export function formatChecks(checks: Check[]): string {
  return checks
    .map((c) => {
      const mark = c.ok ? "✔" : c.skipped ? "-" : "✖";
      const line = `${mark} ${c.name.padEnd(15)} ${c.detail}`;
      return c.fix && !c.ok ? `${line}\n  → ${c.fix}` : line;
    })
    .join("\n");
}

/** The config, or what doctor can still use of an invalid one (its problems become the names check). */
function loadForDoctor(load: (target?: Target) => Config, target?: Target): Config | InvalidConfig {
  try {
    return load(target);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return {
      invalid: true,
      problems: err.problems,
      hint: err.hint,
      profile: err.validValues.DATABRICKS_CONFIG_PROFILE?.value,
      databricksCli: err.validValues.DATABRICKS_CLI?.value,
    };
  }
}

/**
 * doctor: every check, also with an invalid configuration (whatever of it is valid still gets checked;
 * the rest is the failed names check). `load()` gives the command's config, `load(target)` another target's.
 */
export async function doctor(
  loadWith: (flags?: Record<string, string | undefined>) => Config,
  log: Logger,
): Promise<DoctorReport> {
  // Dev names carry the deploying user; when the lookup fails, the profile and workspace lines say why.
  let devFlags: Record<string, string> = {};
  try {
    const r = await withDevNames(loadWith, log);
    devFlags = { "dev-user": r.devUser.segment };
  } catch {
    devFlags = {};
  }
  const load = (target?: Target) => loadWith({ ...devFlags, ...(target ? { target } : {}) });
  const config = loadForDoctor(load);
  if ("invalid" in config) {
    const cli =
      config.databricksCli === undefined
        ? undefined
        : new DatabricksCli(config.databricksCli, config.profile ?? "DEFAULT", log);
    return await runDoctor(config, cli);
  }
  const other = loadForDoctor(load, config.target === "dev" ? "prod" : "dev");
  const otherOk = "invalid" in other ? undefined : other;
  const cli = cliFor(config, log);
  let bundle: BundleProbe | undefined;
  try {
    const rendered = otherOk
      ? renderBundle(config, (t) => (t === config.target ? config : otherOk))
      : undefined;
    if (rendered)
      bundle = {
        bundleDir: rendered.bundleDir,
        state: () => readBundleState(cli, rendered, config.target),
      };
  } catch (err) {
    // A databricks.yml that does not parse is a failed taken-names check (its state cannot be read); a
    // config that does not render fails the names check already.
    bundle =
      err instanceof UserError && err.code === "bundle_file_unreadable"
        ? { bundleDir: path.dirname(config.appDir), state: () => Promise.reject(err) }
        : undefined;
  }
  return await runDoctor(config, cli, otherOk, bundle);
}
