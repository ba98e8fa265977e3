import { createReadStream, existsSync, statSync, watch } from "node:fs";
import type { Config } from "../config/load.js";
import { EXIT, UserError } from "../errors.js";
import { localPaths } from "./state.js";

/** Prints the app's log file through `write` (the CLI's stdout), then follows it until Ctrl-C. */
export async function localLogs(
  config: Config,
  write: (text: string) => void,
  follow: boolean,
): Promise<number> {
  const paths = localPaths(config.local.stateDir);
  if (!existsSync(paths.logFile)) {
    throw new UserError(
      "no_local_logs",
      `no local logs yet (${paths.logFile})`,
      EXIT.input,
      "start the app with `make local ARGS=--detach`",
    );
  }
  let offset = 0;
  const printFrom = async () => {
    const size = statSync(paths.logFile).size;
    if (size < offset) offset = 0;
    if (size === offset) return;
    const stream = createReadStream(paths.logFile, { start: offset, end: size - 1 });
    for await (const chunk of stream) write(String(chunk));
    offset = size;
  };
  await printFrom();
  if (!follow) return 0;
  await new Promise<void>((resolve) => {
    const watcher = watch(paths.logFile, () => void printFrom());
    process.once("SIGINT", () => {
      watcher.close();
      resolve();
    });
  });
  return 0;
}
