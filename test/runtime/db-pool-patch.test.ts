import { describe, expect, it } from "vitest";
import { DB_INDEX_FILE, patchDbPoolText } from "../../src/patches/db-pool-credentials.js";

const ctx = { schema: "metamcp_app", upstreamRef: "v9.9.9" };
// The shape of upstream's apps/backend/src/db/index.ts (written here, not copied).
const DB_INDEX = `import { drizzle } from "drizzle-orm/node-postgres";
import { Pool } from "pg";
import * as schema from "./schema";

export const pool = new Pool({
  connectionString: process.env.DATABASE_URL,
  max: 10,
});
export const db = drizzle(pool, { schema });
`;

describe("db-pool-credentials patch", () => {
  it("makes the pool read the password file per connection, keeps the other options, and is idempotent", () => {
    const out = patchDbPoolText(DB_INDEX_FILE, DB_INDEX, ctx);
    expect(out.edits).toBe(2);
    expect(out.text).toContain("METAMCP_PG_PASSWORD_FILE");
    expect(out.text).toMatch(/password: \(\) => __metamcpReadFileSync\(/);
    expect(out.text).toContain("{ connectionString: process.env.DATABASE_URL }");
    expect(out.text).toContain("max: 10");
    expect(patchDbPoolText(DB_INDEX_FILE, out.text, ctx)).toEqual({ text: out.text, edits: 0 });
  });

  it("fails loudly, naming the file, when upstream has no Pool or no connectionString", () => {
    expect(() => patchDbPoolText(DB_INDEX_FILE, "export const x = 1;\n", ctx)).toThrow(
      /upstream drift in apps\/backend\/src\/db\/index\.ts .*exactly one `new Pool/,
    );
    expect(() =>
      patchDbPoolText(DB_INDEX_FILE, 'import { Pool } from "pg";\nnew Pool({ max: 1 });\n', ctx),
    ).toThrow(/`connectionString`/);
  });
});
