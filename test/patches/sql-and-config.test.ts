import { describe, expect, it } from "vitest";
import { DriftError } from "../../src/errors.js";
import { DRIZZLE_CONFIG_FILE, drizzleConfigPatch } from "../../src/patches/drizzle-config.js";
import { JOURNAL_FILE, publicQualifierLines, sqlMigrationsPatch } from "../../src/patches/sql-migrations.js";
import { MemoryTree } from "../../src/patches/tree.js";

const ctx = { schema: "metamcp_app", upstreamRef: "v9.9.9" };
const JOURNAL = JSON.stringify({
  version: "7",
  dialect: "postgresql",
  entries: [
    { idx: 0, version: "7", when: 1, tag: "0000_a", breakpoints: true },
    { idx: 1, version: "7", when: 2, tag: "0001_b", breakpoints: true },
  ],
});
const M0 = `CREATE TYPE "public"."kind" AS ENUM('a', 'b');--> statement-breakpoint
CREATE TABLE "users" ("id" text PRIMARY KEY NOT NULL, "kind" "public"."kind");
--> statement-breakpoint
ALTER TABLE "posts" ADD CONSTRAINT "fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id");`;
const M1 = `ALTER TABLE "users" ADD COLUMN "name" text;`;

function migrationsTree() {
  return new MemoryTree({
    "apps/backend/drizzle/0000_a.sql": M0,
    "apps/backend/drizzle/0001_b.sql": M1,
    [JOURNAL_FILE]: JOURNAL,
  });
}

describe("sql-migrations patch", () => {
  it('rewrites every "public". qualifier, leaves unqualified SQL and the journal alone', () => {
    const tree = migrationsTree();
    const result = sqlMigrationsPatch.apply(tree, ctx);
    const m0 = tree.read("apps/backend/drizzle/0000_a.sql")!;
    expect(m0).not.toContain('"public".');
    expect(m0).toContain('CREATE TYPE "metamcp_app"."kind"');
    expect(m0).toContain('"kind" "metamcp_app"."kind"');
    expect(m0).toContain('REFERENCES "metamcp_app"."users"("id")');
    expect(m0).toContain('CREATE TABLE "users"');
    expect(tree.read("apps/backend/drizzle/0001_b.sql")).toBe(M1);
    expect(tree.read(JOURNAL_FILE)).toBe(JOURNAL);
    expect(result).toEqual({
      files: [{ path: "apps/backend/drizzle/0000_a.sql", edits: 3 }],
      counts: { migrations: 2, qualifiers: 3 },
    });
    expect(() => sqlMigrationsPatch.verify(tree, ctx)).not.toThrow();
    // Idempotent.
    expect(sqlMigrationsPatch.apply(tree, ctx).files).toEqual([]);
  });

  it("verify names the file and line of a public qualifier left (quoted or not)", () => {
    const tree = migrationsTree();
    sqlMigrationsPatch.apply(tree, ctx);
    tree.write("apps/backend/drizzle/0001_b.sql", `${M1}\nCREATE INDEX "i" ON public.users ("id");`);
    expect(() => sqlMigrationsPatch.verify(tree, ctx)).toThrow(/0001_b\.sql.*line 2/s);
    expect(publicQualifierLines("-- public.x in a comment\nSELECT republic.x;")).toEqual([]);
  });

  it("drift when there are no migrations, or the journal names a missing file", () => {
    expect(() => sqlMigrationsPatch.apply(new MemoryTree({ "apps/backend/x.ts": "" }), ctx)).toThrow(
      /apps\/backend\/drizzle.*v9\.9\.9/,
    );
    const tree = migrationsTree();
    tree.write(JOURNAL_FILE, JOURNAL.replace("0001_b", "0001_gone"));
    sqlMigrationsPatch.apply(tree, ctx);
    expect(() => sqlMigrationsPatch.verify(tree, ctx)).toThrow(/0001_gone\.sql/);
  });
});

const CONFIG = `import { defineConfig } from "drizzle-kit";
export default defineConfig({
  out: "./drizzle",
  schema: "./src/db/schema.ts",
  dialect: "postgresql",
  dbCredentials: {
    url: process.env.DATABASE_URL!,
  },
});
`;

describe("drizzle-config patch", () => {
  it("adds schemaFilter and migrations.schema in the file's own style", () => {
    const tree = new MemoryTree({ [DRIZZLE_CONFIG_FILE]: CONFIG });
    const result = drizzleConfigPatch.apply(tree, ctx);
    expect(tree.read(DRIZZLE_CONFIG_FILE)).toBe(
      CONFIG.replace(
        "  },\n});",
        '  },\n  schemaFilter: ["metamcp_app"],\n  migrations: { schema: "metamcp_app" },\n});',
      ),
    );
    expect(result.files).toEqual([{ path: DRIZZLE_CONFIG_FILE, edits: 2 }]);
    expect(() => drizzleConfigPatch.verify(tree, ctx)).not.toThrow();
    expect(drizzleConfigPatch.apply(tree, ctx).files).toEqual([]);
  });

  it("replaces existing values and keeps other migrations options", () => {
    const text = `const config = {\n  schemaFilter: ["public"],\n  migrations: { table: "journal", schema: "public" }\n} satisfies Config;\nexport default config;\n`;
    const tree = new MemoryTree({ [DRIZZLE_CONFIG_FILE]: text });
    drizzleConfigPatch.apply(tree, ctx);
    const out = tree.read(DRIZZLE_CONFIG_FILE)!;
    expect(out).toContain('schemaFilter: ["metamcp_app"]');
    expect(out).toContain('migrations: { table: "journal", schema: "metamcp_app" }');
    expect(() => drizzleConfigPatch.verify(tree, ctx)).not.toThrow();
  });

  it("drift when there is no config object, and verify refuses an unpatched config", () => {
    const tree = new MemoryTree({ [DRIZZLE_CONFIG_FILE]: "export const nothing = 1;\n" });
    expect(() => drizzleConfigPatch.apply(tree, ctx)).toThrow(DriftError);
    expect(() => drizzleConfigPatch.apply(tree, ctx)).toThrow(/drizzle\.config\.ts/);
    expect(() => drizzleConfigPatch.verify(new MemoryTree({ [DRIZZLE_CONFIG_FILE]: CONFIG }), ctx)).toThrow(
      /schemaFilter/,
    );
  });
});
