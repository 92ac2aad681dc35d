import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { conditions: ["@firedrill/source"] },
  ssr: { resolve: { conditions: ["@firedrill/source"] } },
  test: {
    include: ["packages/*/src/**/*.test.ts", "test/**/*.test.ts"],
    // Tests measure CPU load and run real servers and agents: one file at a time keeps the
    // measurements honest on a 2-core machine.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default", "./test/summary-reporter.ts"],
  },
});
