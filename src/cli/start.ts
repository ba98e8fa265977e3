import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerStart(program: Command): void {
  registerNotYet(program, "start", "Run MetaMCP inside the Databricks App (the app.yaml command)");
}
