import path from "node:path";
import { buildApp } from "../build/build-app.js";
import { OVERLAY_PATH, RUNTIME_BUNDLE_PATH, toolRoot } from "../build/locations.js";
import type { Config } from "../config/load.js";
import type { Logger } from "../log/logger.js";
import { defaultCacheDir, normalizeRepoUrl } from "../upstream/cache.js";
import { readManifest } from "../upstream/manifest.js";
import { prepareUpstream } from "../upstream/prepare.js";
import { TOOL_VERSION } from "../version.js";

/** Why the prepared tree cannot be reused for this configuration, or undefined when it can. */
export function prepareStaleReason(config: Config): string | undefined {
  const m = readManifest(config.buildDir);
  if (!m) return `no prepared tree in ${config.buildDir}`;
  if (m.repoUrl !== normalizeRepoUrl(config.repoUrl, config.cwd))
    return `the repository changed (${m.repoUrl})`;
  if (
    config.ref &&
    config.ref !== m.requestedRef &&
    config.ref !== m.resolvedRef &&
    !m.commit.startsWith(config.ref)
  )
    return `the ref changed (${m.resolvedRef} → ${config.ref})`;
  if (m.schema !== config.schema) return `the schema changed (${m.schema} → ${config.schema})`;
  if (m.toolVersion !== TOOL_VERSION) return `prepared by another version of this tool (${m.toolVersion})`;
  return undefined;
}

/**
 * `local up` runs the golden path's first two steps when they are not current: prepare only when the
 * prepared tree does not match the configuration, build always (it is a no-op when nothing changed).
 */
export async function ensureBuilt(config: Config, log: Logger): Promise<void> {
  const root = toolRoot();
  const stale = prepareStaleReason(config);
  if (stale) {
    log.info(`prepare: ${stale}`);
    await prepareUpstream({
      repoUrl: config.repoUrl,
      ref: config.ref,
      buildDir: config.buildDir,
      schema: config.schema,
      cacheDir: defaultCacheDir(config.values.METAMCP_CACHE_DIR?.value || undefined),
      overlayDir: path.join(root, OVERLAY_PATH),
      toolVersion: TOOL_VERSION,
      cwd: config.cwd,
      log,
    });
  } else {
    log.info(`prepare: reusing ${config.buildDir} (current)`);
  }
  await buildApp({
    buildDir: config.buildDir,
    appDir: config.appDir,
    runtimeBundle: path.join(root, RUNTIME_BUNDLE_PATH),
    overlayDir: path.join(root, OVERLAY_PATH),
    toolVersion: TOOL_VERSION,
    nodeVersion: process.versions.node,
    env: process.env,
    log,
  });
}
