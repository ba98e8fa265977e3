import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerRender(program: Command): void {
  registerNotYet(program, "render", "Render databricks.yml and app.yaml for a target");
}
