import { readFileSync } from "node:fs";
import path from "node:path";
import { processRuns } from "../process/alive.js";
import { waitFor } from "../retry.js";
import { liveSupervisorOf } from "./data-owner.js";
import { killGroup } from "./process-group.js";
import { type LocalPaths, type LocalRunState, runsProgram } from "./state.js";

export interface Leftover {
  what: "app" | "postgres";
  pid: number;
}

/** The postmaster that holds our data dir (its first line of postmaster.pid), if it still runs. */
export function postmasterOf(pgDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(pgDir, "postmaster.pid"), "utf8").split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What a `local up` that died without stopping (kill -9, a crash, a closed terminal) left running: its app
 * (recorded in run.json, still running our runtime) and the PostgreSQL on our data dir (from run.json or,
 * when run.json is gone or damaged, from the data dir's postmaster.pid). Only those, each checked to still
 * be that program; nothing else is ever signalled.
 */
export function findLeftovers(paths: LocalPaths, state: LocalRunState | undefined): Leftover[] {
  const found: Leftover[] = [];
  if (runsProgram(state?.appPid, ["runtime/start.mjs"])) found.push({ what: "app", pid: state!.appPid! });
  // The other instances of `local up --instances N`.
  for (const i of state?.instances?.slice(1) ?? [])
    if (runsProgram(i.pid, ["runtime/start.mjs"])) found.push({ what: "app", pid: i.pid });
  // One a live `local up` still runs is its, not a leftover (this state dir may have been re-made under it).
  const pg = [state?.pgPid, postmasterOf(paths.pgDir)].find(
    (p) => runsProgram(p, ["postgres"]) && liveSupervisorOf(p) === undefined,
  );
  if (pg) found.push({ what: "postgres", pid: pg });
  return found;
}

/** Stops leftovers: the app's whole group (SIGTERM, then SIGKILL), PostgreSQL with a fast shutdown. */
export async function stopLeftovers(leftovers: Leftover[]): Promise<void> {
  for (const l of leftovers) {
    if (l.what === "app") killGroup(l.pid, "SIGTERM");
    else process.kill(l.pid, "SIGINT"); // PostgreSQL's "fast shutdown": clients cut, data consistent
  }
  for (const l of leftovers) {
    const gone = await waitFor(() => (processRuns(l.pid, { zombieCounts: true }) ? undefined : true), {
      timeoutMs: 30_000,
      what: `${l.what} (pid ${l.pid}) to stop`,
    }).catch(() => false);
    if (!gone) {
      if (l.what === "app") killGroup(l.pid, "SIGKILL");
      else if (processRuns(l.pid)) process.kill(l.pid, "SIGKILL");
    }
  }
}
