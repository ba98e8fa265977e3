/**
 * Import boundaries of src/ (`npm run lint` runs `depcruise src --config .dependency-cruiser.cjs`).
 * One rule per concern; each says why it exists. docs/design.md has the module map these keep true.
 *
 * "Core" = src/errors.ts, src/names.ts, src/version.ts, src/retry.ts (the one way to retry and wait),
 * src/placeholders.ts (the one placeholder check) and src/log/**: shared by the CLI and the in-app runtime,
 * zod-free and light.
 */
const CORE = "^src/(errors|names|version|retry|placeholders)\\.ts$|^src/log/";

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "runtime-sealed",
      severity: "error",
      comment:
        "The in-app runtime (runtime/start.mjs) is one self-contained bundle run by plain `node` in the app " +
        "container: whatever it imports is shipped inside it. It may import only runtime files, core and its " +
        "npm dependencies; importing the CLI's modules (config, full zod, help texts, the SDK) bloats the bundle " +
        "and couples the app to the CLI (docs/runtime.md).",
      from: { path: "^src/runtime/" },
      to: { path: "^src/", pathNot: ["^src/runtime/", CORE] },
    },
    {
      name: "core-is-leaf",
      severity: "error",
      comment:
        "Core is imported by every part, the runtime included: anything core imports lands in every part " +
        "(and in the runtime bundle), so core imports only core.",
      from: { path: CORE },
      to: { path: "^src/", pathNot: CORE },
    },
    {
      name: "no-domain-imports-cli",
      severity: "error",
      comment:
        "src/cli/ parses flags, calls one domain module and prints. A domain module that imports cli/ " +
        "(its context, its prompts) can no longer run without the CLI, and help would load it: pass what it " +
        "needs in (a logger, an output callback, a confirm callback) instead.",
      from: { path: "^src/", pathNot: "^src/cli/" },
      to: { path: "^src/cli/" },
    },
    {
      name: "no-folder-cycles",
      scope: "folder",
      severity: "error",
      comment:
        "Two parts that import each other are one part in two folders: a newcomer cannot read either alone, " +
        "and a change in one ripples through the other. Folders form a DAG (cli on top, core at the bottom).",
      from: {},
      to: { circular: true },
    },
    {
      name: "no-module-cycles",
      severity: "error",
      comment: "A module cycle makes import order matter (undefined at load time) and hides a missing seam.",
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    // Only our own files matter here; npm packages are resolved but not crawled.
    exclude: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
  },
};
