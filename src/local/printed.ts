/**
 * How we name our CLI in what we print: the path from a fresh clone's root, which works where the user
 * stands after `make local` (a bare `metamcp-databricks` is not on their PATH, and `npx metamcp-databricks`
 * would ask the npm registry for a package of that name).
 */
export const CLI_PATH = "./bin/metamcp-databricks.js";

export function cliCommand(args: string): string {
  return `${CLI_PATH} ${args}`;
}
