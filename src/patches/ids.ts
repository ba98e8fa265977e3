/**
 * The ids of every patch in PATCHES (index.ts), in order, without loading the patches (they bring the
 * TypeScript compiler). `prepare` compares them with a tree's manifest to see that a newer copy of this
 * tool patches differently, before any git or compiler work. A test keeps this list equal to PATCHES.
 */
export const PATCH_IDS: readonly string[] = [
  "drizzle-schema",
  "sql-migrations",
  "drizzle-config",
  "db-pool-credentials",
  "backend-loopback",
  "frontend-backend-port",
  "databricks-identity",
  "stdio-servers",
  "server-env",
  "next-tracing-root",
  "next-disk-cache",
  "endpoint-server-default",
  "endpoint-identity",
  "databricks-tools",
];
