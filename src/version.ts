import { readFileSync } from "node:fs";

/** The tool's own version, from package.json (read at run time so builds and the manifest agree). */
export const TOOL_VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;
