import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: `${__dirname}/..`,
    include: ['test/unit/**/*.test.ts', 'test/e2e/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    globalSetup: ['test/global-setup.ts'],
    // End-to-end files share the kernel (BPF programs see every socket) and
    // iptables: run files one at a time.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
