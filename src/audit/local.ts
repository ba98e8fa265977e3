import pg from "pg";
import type { Config } from "../config/load.js";
import { EXIT, UserError } from "../errors.js";
import { databaseOfExistingState } from "../local/postgres.js";
import { cliCommand } from "../local/printed.js";
import { currentRun } from "../local/run-info.js";
import { loadOrCreateSecrets, localPaths } from "../local/state.js";
import { type AuditFilters, type AuditRecord, queryAuditRows } from "./query.js";

/**
 * The audit of a running `local up`: its embedded PostgreSQL (port in the run state), as the superuser whose
 * password the state dir keeps, in the database `local` put MetaMCP in. Read only.
 */
export async function readLocalAudit(config: Config, filters: AuditFilters): Promise<AuditRecord[]> {
  const { state, running } = currentRun(config);
  if (!state || !running)
    throw new UserError(
      "local_not_running",
      `nothing runs locally with state dir ${config.local.stateDir}`,
      EXIT.notRunning,
      `start it with \`${cliCommand("local up")}\` (or \`make local\`), or point LOCAL_STATE_DIR at the running one`,
    );
  const secrets = loadOrCreateSecrets(localPaths(config.local.stateDir));
  const admin = (database: string) =>
    `postgres://postgres:${encodeURIComponent(secrets.pgSuperPassword)}@127.0.0.1:${state.ports.postgres}/${database}`;
  const database = await databaseOfExistingState(admin("postgres"), {
    wanted: config.lakebase.database,
    schema: config.schema,
  });
  const client = new pg.Client({ connectionString: admin(database), connectionTimeoutMillis: 5000 });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SET default_transaction_read_only = on");
    return await queryAuditRows(client, config.schema, filters);
  } finally {
    await client.end().catch(() => {});
  }
}
