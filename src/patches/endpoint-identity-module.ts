/**
 * Names shared by the `endpoint-identity` patch, the runtime, `connect` and our backend module
 * (overlay/apps/backend/src/databricks-endpoint-identity.ts, a file of its own that upstream's build compiles;
 * a test keeps its copies of these names equal to these).
 */

/** Where MetaMCP's backend finds our module, copied in from overlay/ by prepare. */
export const ENDPOINT_IDENTITY_MODULE_FILE = "apps/backend/src/databricks-endpoint-identity.ts";
/** The identity module (the trust decision, the user for an identity), copied in by prepare from overlay/. */
export const IDENTITY_MODULE_FILE = "apps/backend/src/databricks-identity.ts";
/** Our table, in the custom schema, created by the runtime (src/runtime/endpoint-identity.ts). */
export const ENDPOINT_IDENTITY_TABLE = "databricks_endpoint_identity";
/** Where the backend answers "does this endpoint accept the workspace identity", and lets its owner change it. */
export const ENDPOINT_IDENTITY_ROUTE = "/metamcp/_databricks/endpoint-identity";
/** The app's environment variable for endpoints with no explicit choice (created after the upgrade). */
export const ENDPOINT_IDENTITY_DEFAULT_VAR = "METAMCP_ENDPOINT_IDENTITY_DEFAULT";
/** The path MetaMCP's user-creation hook sees: it contains `/callback/`, so it counts as an SSO sign-up. */
export const IDENTITY_SIGNUP_PATH = "/callback/databricks-mcp";

/** The one line our backend modules learn the app's schema from, written by the patch. */
export const SCHEMA_MODULE_FILE = "apps/backend/src/databricks-schema.ts";

export function schemaModule(schema: string): string {
  return `// Written by metamcp-databricks (patch endpoint-identity): the app's PostgreSQL schema.
export const DATABRICKS_SCHEMA = ${JSON.stringify(schema)};
`;
}
