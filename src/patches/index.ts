import { backendLoopbackPatch } from "./backend-loopback.js";
import { databricksIdentityPatch } from "./databricks-identity.js";
import { databricksToolsPatch } from "./databricks-tools.js";
import { dbPoolCredentialsPatch } from "./db-pool-credentials.js";
import { drizzleConfigPatch } from "./drizzle-config.js";
import { drizzleSchemaPatch } from "./drizzle-schema.js";
import { endpointIdentityPatch } from "./endpoint-identity.js";
import { endpointServerDefaultPatch } from "./endpoint-server-default.js";
import { frontendBackendPortPatch } from "./frontend-backend-port.js";
import { nextDiskCachePatch } from "./next-disk-cache.js";
import { nextTracingRootPatch } from "./next-tracing-root.js";
import type { Patch } from "./patch.js";
import { serverEnvPatch } from "./server-env.js";
import { sqlMigrationsPatch } from "./sql-migrations.js";
import { stdioServersPatch } from "./stdio-servers.js";

export type { Patch, PatchContext, PatchResult } from "./patch.js";
export { applyPatches, verifyPatches } from "./runner.js";
export { DiskTree, type FileTree, MemoryTree } from "./tree.js";

/**
 * Every patch `prepare` applies, in order; each is verified after all were applied. To add one: write
 * `src/patches/<id>.ts` exporting a `Patch` (see patch.ts) and append it here.
 */
export const PATCHES: readonly Patch[] = [
  drizzleSchemaPatch,
  sqlMigrationsPatch,
  drizzleConfigPatch,
  dbPoolCredentialsPatch,
  backendLoopbackPatch,
  frontendBackendPortPatch,
  databricksIdentityPatch,
  stdioServersPatch,
  serverEnvPatch,
  nextTracingRootPatch,
  nextDiskCachePatch,
  endpointServerDefaultPatch,
  endpointIdentityPatch,
  // Last: it puts its import first in the backend's index.ts, before those the others add.
  databricksToolsPatch,
];
