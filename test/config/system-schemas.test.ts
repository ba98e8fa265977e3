import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

/** PostgreSQL's own schemas are never ours to create tables in: refused at config time, like `public`. */
describe("system schemas", () => {
  for (const schema of ["information_schema", "pg_catalog", "pg_toast", "public"]) {
    it(`METAMCP_DB_SCHEMA=${schema}: exit 2 naming it`, async () => {
      const r = await runCli(["config"], { cwd: tempDir(), env: { METAMCP_DB_SCHEMA: schema } });
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toContain(
        `METAMCP_DB_SCHEMA="${schema}" (from env) must not be \`public\`, \`information_schema\``,
      );
    });
  }
});
