import { defineConfig } from "tsup";

export default defineConfig({
  entry: { cli: "src/cli/main.ts" },
  format: ["esm"],
  target: "node20",
  platform: "node",
  outDir: "dist",
  clean: true,
  sourcemap: true,
  splitting: false,
  // Dependencies stay external for the CLI; the in-app runtime gets its own self-contained bundle (build/).
  skipNodeModulesBundle: true,
});
