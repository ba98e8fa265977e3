import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerBuild(program: Command): void {
  registerNotYet(program, "build", "Build MetaMCP with its pinned pnpm and assemble the app tree");
}
