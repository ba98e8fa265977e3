import { execFile } from "node:child_process";

/** Shown as the name of what is skipped when the registry cannot be reached. */
export const NEEDS_NPM_REGISTRY = "skipped: needs the npm registry";

/**
 * Whether the registry npm is configured with answers, asked once per test file and fast (`npm ping`, npm's
 * own registry, proxy and auth settings, 3 s, no retries): offline, the tests that install with pnpm say
 * "skipped: needs the npm registry" within seconds instead of failing after their 120 s timeouts.
 */
export const npmRegistryReachable: Promise<boolean> = new Promise((resolve) => {
  execFile("npm", ["ping", "--fetch-timeout=3000", "--fetch-retries=0"], { timeout: 8000 }, (err) =>
    resolve(!err),
  );
});
