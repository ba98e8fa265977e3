import { readFileSync } from "node:fs";
import path from "node:path";
import { EXIT, UserError } from "../errors.js";

/**
 * Where `prepare` records what it built, as the app tree carries it (src/build/tree-policy.ts
 * APP_LAYOUT.manifest; the runtime may not import the build's modules, so the path is repeated here).
 */
export const TREE_MANIFEST = ".metamcp-databricks/manifest.json";

/**
 * The PostgreSQL schema an app tree was prepared for: `prepare` moves every table, enum and the migrations'
 * journal into it, so the tree's migrations name it. Undefined when the tree records none (a tree of an
 * older tool, or no manifest): then nothing can be checked.
 */
export function treeSchema(appRoot: string): string | undefined {
  try {
    const m = JSON.parse(readFileSync(path.join(appRoot, TREE_MANIFEST), "utf8")) as { schema?: unknown };
    return typeof m.schema === "string" && m.schema !== "" ? m.schema : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Refuses a schema the tree was not prepared for, before anything is created: the migrations would create
 * tables in the tree's schema, which the app's search_path does not name (`schema "metamcp_app" does not
 * exist`), and an empty schema of the configured name would be left behind.
 * `where`: how the user sets the value (app.yaml's env, .env / the environment).
 */
export function assertTreeSchema(appRoot: string, schema: string, where: string): void {
  const prepared = treeSchema(appRoot);
  if (prepared === undefined || prepared === schema) return;
  throw new UserError(
    "schema_tree_mismatch",
    `METAMCP_DB_SCHEMA is "${schema}" but the app tree in ${appRoot} was prepared for schema "${prepared}" (its migrations create their tables there); nothing was created`,
    EXIT.input,
    `set METAMCP_DB_SCHEMA=${prepared} (${where}), or prepare and build again with METAMCP_DB_SCHEMA=${schema}`,
  );
}
