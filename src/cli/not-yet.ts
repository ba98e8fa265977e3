import type { Command } from "commander";
import { UserError } from "../errors.js";
import { action } from "./common.js";

/** Placeholder for a command whose issue has not landed: says so and exits 2. */
export function registerNotYet(program: Command, name: string, description: string): void {
  program
    .command(name)
    .description(`${description} (not yet available)`)
    .allowUnknownOption()
    .action(
      action(() => {
        throw new UserError("not_yet_available", `\`${name}\` is not yet available in this version`);
      }),
    );
}
