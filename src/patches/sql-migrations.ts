import { drift, type Patch, type PatchFileRecord, requireFile } from "./patch.js";

/**
 * SQL migrations: every `"public".` schema qualifier (types, FK references, anything else) becomes
 * `"<schema>".`. Unqualified statements stay as they are and land in the schema through `search_path`.
 * The journal (meta/_journal.json) is not touched, but checked against the files.
 */
export const SQL_MIGRATIONS_PATCH_ID = "sql-migrations";
export const MIGRATIONS_DIR = "apps/backend/drizzle";
export const JOURNAL_FILE = `${MIGRATIONS_DIR}/meta/_journal.json`;

const QUOTED_PUBLIC = /"public"\s*\./g;
/** `public.` unquoted, as a whole identifier (not `xpublic.`, not `"public".`, not `a.public.`). */
const BARE_PUBLIC = /(?<![\w".$])public\s*\./gi;

export function rewritePublicQualifiers(sql: string, schema: string): { text: string; edits: number } {
  let edits = 0;
  const text = sql.replace(QUOTED_PUBLIC, () => {
    edits++;
    return `"${schema}".`;
  });
  return { text, edits };
}

/** Line numbers (1-based) and text of every remaining `public.` qualifier, quoted or not, outside comments. */
export function publicQualifierLines(sql: string): string[] {
  const found: string[] = [];
  sql.split("\n").forEach((line, i) => {
    const code = line.replace(/--.*$/, "");
    if (new RegExp(QUOTED_PUBLIC.source).test(code) || new RegExp(BARE_PUBLIC.source, "i").test(code)) {
      found.push(`line ${i + 1}: ${line.trim().slice(0, 120)}`);
    }
  });
  return found;
}

function migrationFiles(files: string[]): string[] {
  return files.filter(
    (f) => f.startsWith(`${MIGRATIONS_DIR}/`) && /^[^/]+\.sql$/.test(f.slice(MIGRATIONS_DIR.length + 1)),
  );
}

export const sqlMigrationsPatch: Patch = {
  id: SQL_MIGRATIONS_PATCH_ID,
  description: 'SQL migrations: every "public". qualifier rewritten to the custom schema',
  apply(tree, ctx) {
    const sqlFiles = migrationFiles(tree.list(MIGRATIONS_DIR));
    if (sqlFiles.length === 0) throw drift(this.id, MIGRATIONS_DIR, "Drizzle SQL migrations (*.sql)", ctx);
    const files: PatchFileRecord[] = [];
    let qualifiers = 0;
    for (const file of sqlFiles) {
      const { text, edits } = rewritePublicQualifiers(tree.read(file)!, ctx.schema);
      if (edits === 0) continue;
      tree.write(file, text);
      files.push({ path: file, edits });
      qualifiers += edits;
    }
    return { files, counts: { migrations: sqlFiles.length, qualifiers } };
  },
  verify(tree, ctx) {
    const sqlFiles = migrationFiles(tree.list(MIGRATIONS_DIR));
    if (sqlFiles.length === 0) throw drift(this.id, MIGRATIONS_DIR, "Drizzle SQL migrations (*.sql)", ctx);
    for (const file of sqlFiles) {
      const left = publicQualifierLines(tree.read(file)!);
      if (left.length) {
        throw drift(
          this.id,
          file,
          `no schema qualifier "public". left, found ${left.slice(0, 3).join("; ")}`,
          ctx,
        );
      }
    }
    const journalText = requireFile(tree, JOURNAL_FILE, this.id, ctx);
    let entries: { tag?: unknown }[];
    try {
      const journal = JSON.parse(journalText) as { entries?: { tag?: unknown }[] };
      if (!Array.isArray(journal.entries)) throw new Error("no entries array");
      entries = journal.entries;
    } catch (err) {
      throw drift(
        this.id,
        JOURNAL_FILE,
        `drizzle's journal JSON with an entries array (${(err as Error).message})`,
        ctx,
      );
    }
    const present = new Set(sqlFiles);
    for (const entry of entries) {
      const file = `${MIGRATIONS_DIR}/${String(entry.tag)}.sql`;
      if (!present.has(file))
        throw drift(
          this.id,
          JOURNAL_FILE,
          `every journal entry to have its SQL file, ${file} is missing`,
          ctx,
        );
    }
  },
};
