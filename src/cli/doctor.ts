import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerDoctor(program: Command): void {
  registerNotYet(program, "doctor", "Check the tools, the profile and the workspace");
}
