import { describe, expect, it } from "vitest";
import { DriftError } from "../../src/errors.js";
import { drizzleSchemaPatch, SCHEMA_FILE, schemaConstName } from "../../src/patches/drizzle-schema.js";
import { MemoryTree } from "../../src/patches/tree.js";

const ctx = { schema: "metamcp_app", upstreamRef: "v9.9.9" };

const SCHEMA = `import { sql } from "drizzle-orm";
import {
  boolean,
  pgEnum as makeEnum,
  pgTable,
  text,
} from "drizzle-orm/pg-core";
import { pgTable as table } from "drizzle-orm/pg-core";

export const statusEnum = makeEnum(
  "status",
  ["A", "B"],
);

export const usersTable = pgTable("users", {
  id: text("id").primaryKey(),
  active: boolean("active").default(sql\`true\`),
});

export const postsTable = table(
  "posts",
  {
    id: text("id").primaryKey(),
    status: statusEnum("status"),
    userId: text("user_id").references(() => usersTable.id),
  },
);
`;

function patched(text = SCHEMA) {
  const tree = new MemoryTree({ [SCHEMA_FILE]: text });
  const result = drizzleSchemaPatch.apply(tree, ctx);
  return { tree, result, text: tree.read(SCHEMA_FILE)! };
}

describe("drizzle-schema patch", () => {
  it("derives the schema const's name from the schema", () => {
    expect(schemaConstName("metamcp_app")).toBe("metamcpAppSchema");
    expect(schemaConstName("tenant")).toBe("tenantSchema");
  });

  it("moves every table and enum into the schema, however imported, and fixes the imports", () => {
    const { text, result } = patched();
    expect(text).toContain('export const metamcpAppSchema = pgSchema("metamcp_app");');
    expect(text).toContain("export const statusEnum = metamcpAppSchema.enum(\n");
    expect(text).toContain('export const usersTable = metamcpAppSchema.table("users", {');
    expect(text).toContain("export const postsTable = metamcpAppSchema.table(\n");
    // Aliases and builders gone; pgSchema added in sorted place in the multi-line import.
    expect(text).not.toMatch(/\bpgTable\b|\bpgEnum\b|\bmakeEnum\b|(?<!\.)\btable\(/);
    expect(text).toContain('import {\n  boolean,\n  pgSchema,\n  text,\n} from "drizzle-orm/pg-core";');
    expect(text).not.toContain('import { pgTable as table } from "drizzle-orm/pg-core";');
    expect(result.counts).toEqual({ enums: 1, tables: 2 });
    // 3 calls + 1 declaration + 3 import changes (2 builders dropped + pgSchema added... + a whole import dropped).
    expect(result.files).toEqual([{ path: SCHEMA_FILE, edits: expect.any(Number) }]);
    expect(result.files[0]!.edits).toBeGreaterThanOrEqual(4);
    expect(() => drizzleSchemaPatch.verify(new MemoryTree({ [SCHEMA_FILE]: text }), ctx)).not.toThrow();
  });

  it("keeps everything else byte for byte", () => {
    const { text } = patched();
    expect(text).toContain('userId: text("user_id").references(() => usersTable.id),');
    expect(text).toContain('active: boolean("active").default(sql`true`),');
  });

  it("is idempotent: a second apply changes nothing and reports the same counts", () => {
    const { tree, text, result } = patched();
    const again = drizzleSchemaPatch.apply(tree, ctx);
    expect(tree.read(SCHEMA_FILE)).toBe(text);
    expect(again.files).toEqual([]);
    expect(again.counts).toEqual(result.counts);
  });

  it("handles a namespace import", () => {
    const { text, result } = patched(
      `import * as pg from "drizzle-orm/pg-core";\n\nexport const t = pg.pgTable("t", { id: pg.text("id") });\nexport const e = pg.pgEnum("e", ["x"]);\n`,
    );
    expect(text).toContain('export const metamcpAppSchema = pg.pgSchema("metamcp_app");');
    expect(text).toContain('export const t = metamcpAppSchema.table("t", { id: pg.text("id") });');
    expect(text).toContain('export const e = metamcpAppSchema.enum("e", ["x"]);');
    expect(result.counts).toEqual({ tables: 1, enums: 1 });
  });

  it("keeps a builder import that is still used some other way, and verify then fails on it", () => {
    const text = `import { pgTable } from "drizzle-orm/pg-core";\nexport const a = pgTable("a", {});\nexport const make = pgTable;\n`;
    const tree = new MemoryTree({ [SCHEMA_FILE]: text });
    drizzleSchemaPatch.apply(tree, ctx);
    expect(tree.read(SCHEMA_FILE)).toContain("import { pgSchema, pgTable }");
    expect(() => drizzleSchemaPatch.verify(tree, ctx)).toThrow(/schema.ts.*line \d+: pgTable/s);
  });

  it("fails with drift naming the file when there is no table", () => {
    const tree = new MemoryTree({
      [SCHEMA_FILE]: `import { text } from "drizzle-orm/pg-core";\nexport const x = 1;\n`,
    });
    const err = (() => {
      try {
        drizzleSchemaPatch.apply(tree, ctx);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(DriftError);
    expect((err as DriftError).exitCode).toBe(3);
    expect((err as DriftError).message).toContain(SCHEMA_FILE);
    expect((err as DriftError).message).toContain("v9.9.9");
    expect((err as DriftError).message).toContain("pgTable");
  });

  it("fails with drift when the schema file is missing", () => {
    expect(() => drizzleSchemaPatch.apply(new MemoryTree({}), ctx)).toThrow(DriftError);
    expect(() => drizzleSchemaPatch.apply(new MemoryTree({}), ctx)).toThrow(
      /apps\/backend\/src\/db\/schema\.ts/,
    );
  });

  it("patches other backend files that build tables too", () => {
    const other = "apps/backend/src/db/extra.ts";
    const tree = new MemoryTree({
      [SCHEMA_FILE]: SCHEMA,
      [other]: `import { pgTable, text } from "drizzle-orm/pg-core";\nexport const extra = pgTable("extra", { id: text("id") });\n`,
      "apps/backend/src/other.ts": "export const unrelated = 1;\n",
    });
    const result = drizzleSchemaPatch.apply(tree, ctx);
    expect(result.counts).toEqual({ enums: 1, tables: 3 });
    expect(tree.read(other)).toContain('const metamcpAppSchema = pgSchema("metamcp_app");');
    expect(tree.read(other)).not.toContain("export const metamcpAppSchema");
    expect(result.files.map((f) => f.path).sort()).toEqual([other, SCHEMA_FILE].sort());
    expect(() => drizzleSchemaPatch.verify(tree, ctx)).not.toThrow();
  });

  it("verify refuses tables in another pgSchema", () => {
    const tree = new MemoryTree({
      [SCHEMA_FILE]: `import { pgSchema } from "drizzle-orm/pg-core";\nexport const metamcpAppSchema = pgSchema("metamcp_app");\nexport const other = pgSchema("public_stuff");\nexport const a = metamcpAppSchema.table("a", {});\nexport const b = other.table("b", {});\n`,
    });
    expect(() => drizzleSchemaPatch.verify(tree, ctx)).toThrow(/public_stuff/);
  });

  it("verify refuses an unpatched tree", () => {
    expect(() => drizzleSchemaPatch.verify(new MemoryTree({ [SCHEMA_FILE]: SCHEMA }), ctx)).toThrow(
      DriftError,
    );
  });
});
