import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * How we name our CLI in what we print: the path from a fresh clone's root, which works where the user
 * stands after `make local` (a bare `metamcp-databricks` is not on their PATH, and `npx metamcp-databricks`
 * would ask the npm registry for a package of that name).
 */
export const CLI_PATH = "./bin/metamcp-databricks.js";

export function cliCommand(args: string): string {
  return `${CLI_PATH} ${args}`;
}

/** The clone this CLI runs from: the folder holding bin/metamcp-databricks.js above this module. */
function cliClone(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, CLI_PATH))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/**
 * Run from another folder, the default state dir (`.metamcp-local`, relative) is not the one `make local`
 * made in the clone: name the clone's and the command that works, from anywhere.
 */
export function stateElsewhereHint(stateDir: string, cwd: string, command: string): string | undefined {
  if (existsSync(stateDir)) return undefined;
  const clone = cliClone();
  if (!clone || path.resolve(clone) === path.resolve(cwd)) return undefined;
  const theirs = path.join(clone, ".metamcp-local");
  if (!existsSync(theirs)) return undefined;
  return `no local state in ${stateDir} (this folder); the clone's is ${theirs}: run \`cd ${clone} && ${cliCommand(command)}\``;
}
