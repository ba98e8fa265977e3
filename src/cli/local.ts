import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerLocal(program: Command): void {
  registerNotYet(
    program,
    "local",
    "Run the whole app on this machine against an embedded Lakebase-like PostgreSQL",
  );
}
