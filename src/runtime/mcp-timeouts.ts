import type pg from "pg";

/**
 * MetaMCP's own limits on a tool call live in its `config` table, not in the environment
 * (config.service.ts: `MCP_TIMEOUT` and `MCP_MAX_TOTAL_TIMEOUT`, 60 000 ms each when unset; the Settings
 * page writes them). At 60 s MetaMCP gives up on a call long before the Apps proxy's 120 s cut, so a
 * 70 s tool fails for no platform reason. We set both just under the proxy's cut: a call up to 110 s
 * succeeds, and a longer one ends with MetaMCP's own MCP timeout error (a clear JSON-RPC error) rather
 * than the proxy cutting the connection.
 */
export const MCP_TOOL_TIMEOUT_MS = 110_000;

const KEYS = [
  ["MCP_TIMEOUT", "MCP request timeout in milliseconds"],
  ["MCP_MAX_TOTAL_TIMEOUT", "MCP maximum total timeout in milliseconds"],
] as const;

/**
 * Seeds the two timeouts when the table has no value yet; a value someone chose in MetaMCP's Settings is
 * never overwritten. Returns the values in force, or undefined when this release has no config table.
 */
export async function seedMcpTimeouts(
  client: pg.Client,
  schema: string,
  timeoutMs = MCP_TOOL_TIMEOUT_MS,
): Promise<Record<string, number> | undefined> {
  const table = `"${schema}"."config"`;
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [table]);
  if (!exists.rows[0]?.t) return undefined;
  for (const [id, description] of KEYS) {
    await client.query(
      `INSERT INTO ${table} (id, value, description) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
      [id, String(timeoutMs), description],
    );
  }
  const rows = await client.query<{ id: string; value: string }>(
    `SELECT id, value FROM ${table} WHERE id = ANY($1)`,
    [KEYS.map(([id]) => id)],
  );
  return Object.fromEntries(rows.rows.map((r) => [r.id, Number.parseInt(r.value, 10)]));
}
