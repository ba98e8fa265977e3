import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Each file may start PostgreSQL or servers; two cores here, so keep parallelism modest.
    maxWorkers: 2,
    pool: "forks",
  },
});
