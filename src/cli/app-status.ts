import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerAppStatus(program: Command): void {
  registerNotYet(program, "app-status", "Show app, compute and deployment state");
}
