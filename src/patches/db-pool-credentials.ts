import { drift, type Patch, type PatchContext, requireFile } from "./patch.js";
import {
  applyTextEdits,
  forget,
  parseTypeScript,
  propertyName,
  syntaxErrors,
  type TextEdit,
} from "./text-edits.js";
import { Node, type ObjectLiteralExpression, type SourceFile } from "./ts-morph.js";

/**
 * Lakebase passwords are OAuth credentials that expire after an hour and are checked at login. The
 * runtime renews them and writes the current one to the file named by METAMCP_PG_PASSWORD_FILE; this
 * patch makes upstream's `new Pool({ connectionString, ... })` read that file for EVERY new connection
 * (node-postgres accepts a password function). Without the variable the pool behaves as upstream's.
 * `connectionString` must go when the function is used: node-postgres lets the URL's (empty) password
 * override a password function, so the connection then comes from the PG* variables instead.
 */
export const DB_POOL_PATCH_ID = "db-pool-credentials";
export const DB_INDEX_FILE = "apps/backend/src/db/index.ts";
export const PASSWORD_FILE_VAR = "METAMCP_PG_PASSWORD_FILE";
const IMPORT_LINE = `import { readFileSync as __metamcpReadFileSync } from "node:fs";\n`;

function poolConfigObjects(sf: SourceFile): ObjectLiteralExpression[] {
  const found: ObjectLiteralExpression[] = [];
  sf.forEachDescendant((node) => {
    if (!Node.isNewExpression(node)) return;
    if (node.getExpression().getText().split(".").pop() !== "Pool") return;
    const arg = node.getArguments()[0];
    if (arg && Node.isObjectLiteralExpression(arg)) found.push(arg);
  });
  return found;
}

export function patchDbPoolText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  if (text.includes(PASSWORD_FILE_VAR)) return { text, edits: 0 };
  const sf = parseTypeScript(file, text);
  try {
    const pools = poolConfigObjects(sf);
    if (pools.length !== 1)
      throw drift(DB_POOL_PATCH_ID, file, `exactly one \`new Pool({ ... })\`, found ${pools.length}`, ctx);
    const obj = pools[0]!;
    const conn = obj.getProperties().find((p) => propertyName(p) === "connectionString");
    if (!conn) throw drift(DB_POOL_PATCH_ID, file, "`connectionString` in the Pool's options", ctx);
    const connText = conn.getText();
    const replacement =
      `...(process.env.${PASSWORD_FILE_VAR}\n` +
      `    ? { password: () => __metamcpReadFileSync(process.env.${PASSWORD_FILE_VAR} as string, "utf8").trim() }\n` +
      `    : { ${connText} })`;
    const edits: TextEdit[] = [
      { start: conn.getStart(), end: conn.getEnd(), text: replacement },
      { start: 0, end: 0, text: IMPORT_LINE },
    ];
    return { text: applyTextEdits(text, edits), edits: edits.length };
  } finally {
    forget(sf);
  }
}

export const dbPoolCredentialsPatch: Patch = {
  id: DB_POOL_PATCH_ID,
  description:
    "pg Pool reads the current Lakebase credential (renewed by the runtime) for every new connection",
  apply(tree, ctx) {
    const text = requireFile(tree, DB_INDEX_FILE, this.id, ctx);
    const out = patchDbPoolText(DB_INDEX_FILE, text, ctx);
    if (out.text !== text) tree.write(DB_INDEX_FILE, out.text);
    return { files: out.edits ? [{ path: DB_INDEX_FILE, edits: out.edits }] : [] };
  },
  verify(tree, ctx) {
    const text = requireFile(tree, DB_INDEX_FILE, this.id, ctx);
    const sf = parseTypeScript(DB_INDEX_FILE, text);
    try {
      const errors = syntaxErrors(sf);
      if (errors.length) throw drift(this.id, DB_INDEX_FILE, `valid TypeScript, got ${errors[0]}`, ctx);
      const pools = poolConfigObjects(sf);
      const ok = pools.length === 1 && pools[0]!.getText().includes(`process.env.${PASSWORD_FILE_VAR}`);
      if (!ok) throw drift(this.id, DB_INDEX_FILE, `the Pool's options to read ${PASSWORD_FILE_VAR}`, ctx);
    } finally {
      forget(sf);
    }
  },
};
