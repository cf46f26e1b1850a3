import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Prints which data the run uses (../shared or only what ships) and what is therefore not run.
    globalSetup: ["test/support/global-setup.ts"],
    // Native addons (faiss, onnxruntime, sharp) are safest in child processes.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 600_000,
  },
});
