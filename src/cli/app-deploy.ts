import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerAppDeploy(program: Command): void {
  registerNotYet(program, "app-deploy", "Deploy the synced bundle source to the App (SNAPSHOT) and wait");
}
