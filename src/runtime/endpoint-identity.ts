import type pg from "pg";

/**
 * Our own table for the per-endpoint choice "accept the Databricks workspace identity instead of a MetaMCP
 * API key" (patch endpoint-identity; docs/identity.md, "MCP clients"). It lives in the custom schema but is
 * never part of upstream's migrations (they keep adding columns to `endpoints`, and a migration of ours in
 * their journal would collide with their next one), so the runtime creates it at every start, after
 * upstream's migrations.
 *
 * The first time it is created, every endpoint that already exists gets an explicit "off" row: an upgrade
 * changes no existing endpoint. Endpoints created later have no row and follow the app's default
 * (METAMCP_ENDPOINT_IDENTITY_DEFAULT, on unless "off"), until their owner sets one.
 */
export const ENDPOINT_IDENTITY_TABLE = "databricks_endpoint_identity";
/** Its own advisory lock: instances starting together create it (and take the snapshot) once. */
const LOCK = 0x6d6d6469; // "mmdi"

export interface EndpointIdentityTable {
  created: boolean;
  /** Endpoints that existed when the table was created, kept on API keys. */
  keptOnKeys: number;
  /** Endpoints with an explicit choice (rows). */
  rows: number;
}

export async function ensureEndpointIdentityTable(
  client: pg.Client,
  schema: string,
): Promise<EndpointIdentityTable> {
  const table = `"${schema}"."${ENDPOINT_IDENTITY_TABLE}"`;
  await client.query("SELECT pg_advisory_lock($1)", [LOCK]);
  try {
    const exists = async (name: string) =>
      (await client.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [`"${schema}"."${name}"`]))
        .rows[0]?.t != null;
    let created = false;
    let keptOnKeys = 0;
    if (!(await exists(ENDPOINT_IDENTITY_TABLE))) {
      await client.query("BEGIN");
      try {
        await client.query(`CREATE TABLE ${table} (
  endpoint_uuid uuid PRIMARY KEY,
  accept_identity boolean NOT NULL,
  updated_by text,
  updated_at timestamp with time zone NOT NULL DEFAULT now()
)`);
        if (await exists("endpoints")) {
          const r = await client.query(
            `INSERT INTO ${table} (endpoint_uuid, accept_identity, updated_by) SELECT uuid, false, 'upgrade' FROM "${schema}"."endpoints"`,
          );
          keptOnKeys = r.rowCount ?? 0;
        }
        await client.query("COMMIT");
        created = true;
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {});
        throw err;
      }
    }
    // A deleted endpoint's row is dropped with it (uuids are never reused, this only keeps the table small).
    if (await exists("endpoints")) {
      await client.query(
        `DELETE FROM ${table} t WHERE NOT EXISTS (SELECT 1 FROM "${schema}"."endpoints" e WHERE e.uuid = t.endpoint_uuid)`,
      );
    }
    const rows = Number(
      (await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`)).rows[0]?.n,
    );
    return { created, keptOnKeys, rows };
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [LOCK]).catch(() => {});
  }
}

export function describeEndpointIdentityTable(t: EndpointIdentityTable, schema: string): string {
  return t.created
    ? `created ${schema}.${ENDPOINT_IDENTITY_TABLE} (per-endpoint Databricks identity); ${t.keptOnKeys} existing endpoint(s) kept on API keys`
    : `${schema}.${ENDPOINT_IDENTITY_TABLE}: ${t.rows} endpoint(s) with an explicit identity choice`;
}

/** The app's default for endpoints with no explicit choice, passed on to MetaMCP when the app sets it. */
export function endpointIdentityChildEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const v = env.METAMCP_ENDPOINT_IDENTITY_DEFAULT;
  return v ? { METAMCP_ENDPOINT_IDENTITY_DEFAULT: v } : {};
}
