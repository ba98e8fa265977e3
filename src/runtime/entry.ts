import path from "node:path";
import { fileURLToPath } from "node:url";
import { runApp } from "./main.js";

/**
 * The app tree's `runtime/start.mjs` (tsup's entry for it): app.yaml runs `node runtime/start.mjs`, and this
 * file does nothing but start the runtime from the folder it lies in. It is the ONLY module with a top-level
 * side effect; `main.ts` stays import-safe, so the CLI (`metamcp-databricks start`) can bundle it without
 * starting the runtime when any other command loads a shared chunk.
 */
process.exit(await runApp(path.dirname(fileURLToPath(import.meta.url))));
