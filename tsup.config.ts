import { defineConfig } from "tsup";

export default defineConfig([
  {
    entry: { cli: "src/cli/main.ts" },
    format: ["esm"],
    target: "node20",
    platform: "node",
    outDir: "dist",
    clean: true,
    sourcemap: true,
    // Chunks per command (main.ts imports each command's module on use), so starting one command does not
    // load every command's dependencies.
    splitting: true,
    // Dependencies stay external for the CLI; the in-app runtime below is self-contained.
    skipNodeModulesBundle: true,
  },
  {
    // The app tree's `runtime/start.mjs`: one file, every dependency inlined, run with plain `node`
    // in the Apps container (no install, no pnpm at start).
    // runtime/secrets-preload.mjs: given to MetaMCP's processes with `node --import` (src/runtime/child-secrets.ts).
    // runtime/telemetry.mjs: the OpenTelemetry SDK, imported by start.mjs only when METAMCP_TELEMETRY is on
    // (src/runtime/telemetry.ts), so it costs start.mjs nothing.
    entry: {
      "runtime/start": "src/runtime/entry.ts",
      "runtime/secrets-preload": "src/runtime/secrets-preload.ts",
      "runtime/telemetry": "src/runtime/telemetry-export.ts",
    },
    format: ["esm"],
    outExtension: () => ({ js: ".mjs" }),
    target: "node20",
    platform: "node",
    outDir: "dist",
    clean: false,
    sourcemap: false,
    splitting: false,
    // Within start.mjs's 450 KB budget (docs/runtime.md): whitespace and syntax only, names kept, so a stack
    // trace from the app still names our functions.
    minifyWhitespace: true,
    minifySyntax: true,
    noExternal: [/.*/],
    external: ["pg-native"],
    banner: {
      // CommonJS dependencies (pg) call require() for Node built-ins; give the ESM bundle one.
      js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);',
    },
  },
]);
