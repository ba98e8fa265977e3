import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerDestroy(program: Command): void {
  registerNotYet(program, "destroy", "Delete the dev app and bundle");
}
