import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { ENDPOINT_IDENTITY_MODULE_FILE, schemaModule } from "../../src/patches/endpoint-identity-module.js";
import { PROJECT_ROOT } from "./cli.js";

/**
 * The MCP-endpoint parts of the fake app tree (docs/identity.md, "MCP clients"), as MetaMCP v2.4.22 has them
 * AFTER our `endpoint-identity` patch:
 * - migration 0003_endpoints: upstream's `endpoints` table (the columns the middleware reads: uuid, name,
 *   enable_api_key_auth, enable_oauth, use_query_param_auth, user_id → users) with the fake's endpoints as
 *   rows (see FAKE_ENDPOINT_ROWS); they exist before the runtime first creates our table, as endpoints of
 *   an upgraded app do;
 * - dist/db/index.mjs: `db = drizzle(pool)`, as upstream's db module exports it (password from the file);
 * - dist/databricks-endpoint-identity.mjs: OUR module exactly as the patch writes it (schema metamcp_app),
 *   transpiled; the fake backend calls `acceptDatabricksIdentity` first in its key check and mounts
 *   `databricksEndpointIdentitySettings`, as the patched middleware and index.ts do.
 */

/** The schema `local` uses by default (METAMCP_SCHEMA): the module names its tables with it. */
export const FAKE_SCHEMA = "metamcp_app";

/** The fake's endpoints with upstream's flags; uuids fixed so tests can refer to them. */
export const FAKE_ENDPOINT_ROWS = [
  {
    uuid: "00000000-0000-4000-8000-00000000000d",
    name: "demo",
    apiKey: true,
    oauth: false,
    queryParam: false,
  },
  {
    uuid: "00000000-0000-4000-8000-0000000000d9",
    name: "demo-qp",
    apiKey: true,
    oauth: false,
    queryParam: true,
  },
  {
    uuid: "00000000-0000-4000-8000-00000000000e",
    name: "open",
    apiKey: false,
    oauth: false,
    queryParam: false,
  },
] as const;

export const ENDPOINTS_MIGRATION = `CREATE TABLE "endpoints" (
\t"uuid" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
\t"name" text NOT NULL,
\t"description" text,
\t"enable_api_key_auth" boolean DEFAULT true NOT NULL,
\t"enable_oauth" boolean DEFAULT false NOT NULL,
\t"use_query_param_auth" boolean DEFAULT false NOT NULL,
\t"created_at" timestamp with time zone DEFAULT now() NOT NULL,
\t"user_id" text REFERENCES "users"("id") ON DELETE cascade,
\tCONSTRAINT "endpoints_name_unique" UNIQUE("name")
);
--> statement-breakpoint
INSERT INTO "endpoints" ("uuid", "name", "enable_api_key_auth", "enable_oauth", "use_query_param_auth") VALUES
${FAKE_ENDPOINT_ROWS.map((e) => `\t('${e.uuid}', '${e.name}', ${e.apiKey}, ${e.oauth}, ${e.queryParam})`).join(",\n")};
`;

const DB_MODULE = `
import { readFileSync } from "node:fs";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";

const pool = new pg.Pool(
  process.env.METAMCP_PG_PASSWORD_FILE
    ? { password: () => readFileSync(process.env.METAMCP_PG_PASSWORD_FILE, "utf8").trim(), idleTimeoutMillis: 200 }
    : { connectionString: process.env.DATABASE_URL, idleTimeoutMillis: 200 },
);
pool.on("error", () => {});
export const db = drizzle(pool);
`;

/** Our module as the built backend carries it (tsup bundles it upstream; here: transpiled, imports as .mjs). */
export function transpiledEndpointIdentityModule(): string {
  return transpiled(readFileSync(path.join(PROJECT_ROOT, "overlay", ENDPOINT_IDENTITY_MODULE_FILE), "utf8"))
    .replace(/from "\.\/databricks-identity"/, 'from "./databricks-identity.mjs"')
    .replace(/from "\.\/databricks-schema"/, 'from "./databricks-schema.mjs"')
    .replace(/from "\.\/db\/index"/, 'from "./db/index.mjs"');
}

function transpiled(text: string): string {
  return ts.transpileModule(text, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
}

/** Writes the endpoints migration, the db module and our module into `backendDir` (journal entry: the caller). */
export function writeEndpointIdentityFiles(backendDir: string): void {
  mkdirSync(path.join(backendDir, "dist/db"), { recursive: true });
  mkdirSync(path.join(backendDir, "drizzle"), { recursive: true });
  writeFileSync(path.join(backendDir, "dist/db/index.mjs"), DB_MODULE);
  writeFileSync(
    path.join(backendDir, "dist/databricks-endpoint-identity.mjs"),
    transpiledEndpointIdentityModule(),
  );
  writeFileSync(path.join(backendDir, "dist/databricks-schema.mjs"), transpiled(schemaModule(FAKE_SCHEMA)));
  writeFileSync(path.join(backendDir, "drizzle/0003_endpoints.sql"), ENDPOINTS_MIGRATION);
}
