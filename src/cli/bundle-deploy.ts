import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerBundleDeploy(program: Command): void {
  registerNotYet(program, "bundle-deploy", "Deploy the Databricks Asset Bundle for a target");
}
