import { receiveChildSecrets } from "./child-secrets.js";

/**
 * The app tree's `runtime/secrets-preload.mjs` (tsup's entry for it): the runtime starts MetaMCP's backend and
 * frontend with `node --import <this file>`, and this runs before their code: it reads the secrets the runtime
 * hands over on an inherited pipe into `process.env` and closes the pipe (child-secrets.ts says why). With
 * entry.ts, the only modules with a top-level side effect. A failure stops the process before MetaMCP starts
 * without its secrets (the runtime then restarts it, and says so).
 */
try {
  receiveChildSecrets(process.env);
} catch (err) {
  process.stderr.write(
    `metamcp-databricks: could not receive this process's secrets from the runtime: ${(err as Error).message}\n`,
  );
  process.exit(70);
}
