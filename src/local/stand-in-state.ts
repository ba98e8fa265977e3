import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import type { Logger } from "../log/logger.js";
import type { LocalUser, SavedBrowserSession } from "./platform/users.js";
import { freePort } from "./postgres.js";

/**
 * What the Databricks stand-in keeps across `local down`/`up` of one state dir, so a person stays signed
 * in: the login page's port (the workspace's origin) and the proxy's browser sessions (with the users they
 * belong to). Without it every restart sent the browser to the login page again. The file holds session
 * cookies' values: 0600 in the state dir, like secrets.json.
 */
export interface StandInState {
  workspacePort?: number;
  sessions: SavedBrowserSession[];
  users: LocalUser[];
}

export function standInStateFile(stateDir: string): string {
  return path.join(stateDir, "stand-in.json");
}

export function readStandInState(file: string): StandInState {
  if (!existsSync(file)) return { sessions: [], users: [] };
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<StandInState>;
    const port = parsed.workspacePort;
    return {
      workspacePort: Number.isInteger(port) && port! > 0 && port! < 65536 ? port : undefined,
      sessions: Array.isArray(parsed.sessions)
        ? parsed.sessions.filter(
            (s) =>
              typeof s?.id === "string" && typeof s.email === "string" && typeof s.expiresAt === "number",
          )
        : [],
      users: Array.isArray(parsed.users)
        ? parsed.users.filter(
            (u) => typeof u?.id === "string" && typeof u.email === "string" && typeof u.name === "string",
          )
        : [],
    };
  } catch {
    // Only sign-ins are lost with it: start without, and the next save replaces it.
    return { sessions: [], users: [] };
  }
}

export function writeStandInState(file: string, state: StandInState): void {
  writeFileAtomic.sync(file, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

/** The saved login port when it is still free; else a new one, said once (the browser signs in again). */
export async function pickWorkspacePort(
  saved: number | undefined,
  avoid: readonly number[],
  log: Logger,
): Promise<number> {
  if (saved !== undefined && !avoid.includes(saved) && (await portIsFree(saved))) return saved;
  const port = await freePort("127.0.0.1", avoid);
  if (saved !== undefined)
    log.warn(
      `the local login page's port ${saved} (kept from the last run) is taken by another program: using ${port}; browsers signed in before sign in again`,
    );
  return port;
}

async function portIsFree(port: number): Promise<boolean> {
  const { createServer } = await import("node:net");
  return await new Promise<boolean>((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}
