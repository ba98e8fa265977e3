import { buildFromConfig } from "../build/build-app.js";
import type { Config } from "../config/load.js";
import type { Logger } from "../log/logger.js";
import { normalizeRepoUrl } from "../upstream/cache.js";
import { readManifest } from "../upstream/manifest.js";
import { prepareFromConfig } from "../upstream/prepare.js";
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
  const stale = prepareStaleReason(config);
  if (stale) {
    log.info(`prepare: ${stale}`);
    await prepareFromConfig(config, log);
  } else {
    log.info(`prepare: reusing ${config.buildDir} (current)`);
  }
  await buildFromConfig(config, log);
}
