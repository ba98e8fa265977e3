import type { Command } from "commander";
import { registerNotYet } from "./not-yet.js";

export function registerPrepare(program: Command): void {
  registerNotYet(
    program,
    "prepare",
    "Clone MetaMCP at a ref, overlay our files and apply the Lakebase patches",
  );
}
