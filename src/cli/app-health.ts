import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerAppHealth(program: Command): void {
  registerNotYet(program, "app-health", "Check <app url>/metamcp/health through the Apps proxy");
}
