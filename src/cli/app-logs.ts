import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerAppLogs(program: Command): void {
  registerNotYet(program, "app-logs", "Stream the app's logs");
}
