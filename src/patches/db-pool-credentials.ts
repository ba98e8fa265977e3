import {
  drift,
  oneFilePatch,
  type Patch,
  type PatchContext,
  withSourceFile,
  withValidSourceFile,
} from "./patch.js";
import { applyTextEdits, propertyName, type TextEdit } from "./text-edits.js";
import { type CallExpression, Node, type ObjectLiteralExpression, type SourceFile } from "./ts-morph.js";

/**
 * Lakebase passwords are OAuth credentials that expire after an hour and are checked at login. The
 * runtime renews them and writes the current one to the file named by METAMCP_PG_PASSWORD_FILE; this
 * patch makes upstream's connection pool read that file for EVERY new connection (node-postgres accepts
 * a password function). Without the variable the pool behaves as upstream's.
 *
 * Upstream has connected in two ways (read from every stable tag, docs/releases.md):
 * - `drizzle(process.env.DATABASE_URL, { schema })` (v2.0.0–v2.4.5): drizzle builds the pool itself from
 *   the URL, so the patch hands drizzle a `Pool` of ours instead of the URL when the variable is set, with
 *   the idle-client error handler upstream itself added in v2.4.6 (a database that closes idle connections,
 *   as a scaling Lakebase does, must not crash the backend);
 * - `new Pool({ connectionString: DATABASE_URL, ... })` then `drizzle(pool, { schema })` (v2.4.6 on):
 *   the patch swaps `connectionString` for the password function, keeping the other options (ssl).
 * In both, `connectionString` must go when the function is used: node-postgres lets the URL's (empty)
 * password override a password function, so the connection then comes from the PG* variables instead.
 * Anything else is drift (exit 3), naming the file and the forms this patch knows.
 */
export const DB_POOL_PATCH_ID = "db-pool-credentials";
export const DB_INDEX_FILE = "apps/backend/src/db/index.ts";
export const PASSWORD_FILE_VAR = "METAMCP_PG_PASSWORD_FILE";
const READ_FILE_ALIAS = "__metamcpReadFileSync";
const POOL_ALIAS = "__MetamcpPool";
const READ_FILE_IMPORT = `import { readFileSync as ${READ_FILE_ALIAS} } from "node:fs";\n`;
const POOL_IMPORT = `import { Pool as ${POOL_ALIAS} } from "pg";\n`;
const PASSWORD_FN = `password: () => ${READ_FILE_ALIAS}(process.env.${PASSWORD_FILE_VAR} as string, "utf8").trim()`;

/** What the patch expects, for drift messages: both forms upstream has used, with the releases. */
export const KNOWN_FORMS =
  "exactly one `new Pool({ connectionString, ... })` (MetaMCP v2.4.6 and later) or exactly one " +
  "`drizzle(process.env.DATABASE_URL, { schema })` (MetaMCP v2.0.0–v2.4.5) as the database connection";

export type ConnectionForm = "pool" | "drizzle-url";

/** `new Pool({ ... })` / `new pg.Pool({ ... })`: the options object of each. */
function poolConfigObjects(sf: SourceFile, className = "Pool"): ObjectLiteralExpression[] {
  const found: ObjectLiteralExpression[] = [];
  sf.forEachDescendant((node) => {
    if (!Node.isNewExpression(node)) return;
    if (node.getExpression().getText().split(".").pop() !== className) return;
    const arg = node.getArguments()[0];
    if (arg && Node.isObjectLiteralExpression(arg)) found.push(arg);
  });
  return found;
}

/** Local names under which `drizzle` is imported from drizzle-orm's node-postgres driver. */
function drizzleNames(sf: SourceFile): Set<string> {
  const names = new Set<string>();
  for (const decl of sf.getImportDeclarations()) {
    if (decl.getModuleSpecifierValue() !== "drizzle-orm/node-postgres") continue;
    for (const spec of decl.getNamedImports()) {
      if (spec.getName() === "drizzle") names.add(spec.getAliasNode()?.getText() ?? "drizzle");
    }
  }
  return names;
}

/**
 * `drizzle(<the database URL>, ...)` calls: the first argument is the URL itself (`process.env.DATABASE_URL`
 * or a `DATABASE_URL` destructured from it), not a client or a config object.
 */
function drizzleUrlCalls(sf: SourceFile): CallExpression[] {
  const names = drizzleNames(sf);
  const found: CallExpression[] = [];
  sf.forEachDescendant((node) => {
    if (!Node.isCallExpression(node)) return;
    if (!names.has(node.getExpression().getText())) return;
    const first = node.getArguments()[0];
    if (!first || Node.isObjectLiteralExpression(first)) return;
    if (/\bDATABASE_URL\b/.test(first.getText())) found.push(node);
  });
  return found;
}

function alreadyImports(sf: SourceFile, module: string, name: string, alias: string): boolean {
  return sf
    .getImportDeclarations()
    .some(
      (d) =>
        d.getModuleSpecifierValue() === module &&
        d.getNamedImports().some((s) => s.getName() === name && s.getAliasNode()?.getText() === alias),
    );
}

export function patchDbPoolText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number; form?: ConnectionForm } {
  if (text.includes(PASSWORD_FILE_VAR)) return { text, edits: 0 };
  return withSourceFile(file, text, (sf) => {
    const pools = poolConfigObjects(sf);
    const urlCalls = drizzleUrlCalls(sf);
    if (pools.length + urlCalls.length !== 1) {
      throw drift(
        DB_POOL_PATCH_ID,
        file,
        `${KNOWN_FORMS}; found ${pools.length} \`new Pool({ ... })\` and ${urlCalls.length} \`drizzle(<DATABASE_URL>, ...)\``,
        ctx,
      );
    }
    const edits: TextEdit[] = [{ start: 0, end: 0, text: READ_FILE_IMPORT }];
    let form: ConnectionForm;
    if (pools.length === 1) {
      form = "pool";
      const conn = pools[0]!.getProperties().find((p) => propertyName(p) === "connectionString");
      if (!conn)
        throw drift(DB_POOL_PATCH_ID, file, "`connectionString` in the `new Pool({ ... })` options", ctx);
      edits.push({
        start: conn.getStart(),
        end: conn.getEnd(),
        text:
          `...(process.env.${PASSWORD_FILE_VAR}\n` +
          `    ? { ${PASSWORD_FN} }\n` +
          `    : { ${conn.getText()} })`,
      });
    } else {
      form = "drizzle-url";
      const url = urlCalls[0]!.getArguments()[0]!;
      edits.push({ start: 0, end: 0, text: POOL_IMPORT });
      edits.push({
        start: url.getStart(),
        end: url.getEnd(),
        text:
          `process.env.${PASSWORD_FILE_VAR}\n` +
          `    ? new ${POOL_ALIAS}({ ${PASSWORD_FN} }).on("error", (err) => console.error("PostgreSQL pool error (ignored):", err))\n` +
          `    : ${url.getText()}`,
      });
    }
    return { text: applyTextEdits(text, edits), edits: edits.length, form };
  });
}

/**
 * What `verify` checks on the final tree: valid TypeScript; the one connection reads the password file
 * (the Pool's options, or the Pool of ours handed to drizzle); the imports that code needs are there.
 */
export function verifyDbPoolText(file: string, text: string, ctx: PatchContext): ConnectionForm {
  return withValidSourceFile(DB_POOL_PATCH_ID, file, text, ctx, (sf) => {
    const readsFile = (obj: ObjectLiteralExpression) =>
      obj.getText().includes(`password: () => ${READ_FILE_ALIAS}(process.env.${PASSWORD_FILE_VAR}`);
    const pools = poolConfigObjects(sf);
    const urlCalls = drizzleUrlCalls(sf);
    let form: ConnectionForm | undefined;
    if (pools.length === 1 && urlCalls.length === 0 && readsFile(pools[0]!)) form = "pool";
    if (pools.length === 0 && urlCalls.length === 1) {
      const ours = poolConfigObjects(sf, POOL_ALIAS);
      const first = urlCalls[0]!.getArguments()[0]!;
      if (ours.length === 1 && readsFile(ours[0]!) && first.getText().includes(ours[0]!.getText()))
        form = "drizzle-url";
    }
    if (!form)
      throw drift(DB_POOL_PATCH_ID, file, `${KNOWN_FORMS}, patched to read ${PASSWORD_FILE_VAR}`, ctx);
    const missing = [
      alreadyImports(sf, "node:fs", "readFileSync", READ_FILE_ALIAS) ? undefined : READ_FILE_IMPORT.trim(),
      form === "pool" || alreadyImports(sf, "pg", "Pool", POOL_ALIAS) ? undefined : POOL_IMPORT.trim(),
    ].filter(Boolean);
    if (missing.length) throw drift(DB_POOL_PATCH_ID, file, `the import ${missing.join(" and ")}`, ctx);
    return form;
  });
}

export const dbPoolCredentialsPatch: Patch = oneFilePatch({
  id: DB_POOL_PATCH_ID,
  description:
    "pg Pool reads the current Lakebase credential (renewed by the runtime) for every new connection",
  file: DB_INDEX_FILE,
  patchText: patchDbPoolText,
  verifyText: verifyDbPoolText,
});
