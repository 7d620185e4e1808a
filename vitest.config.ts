import { defineConfig } from 'vitest/config';

// Unit tests sit beside the code; tests that need other processes (Redis, the API server,
// several quota-service processes) live under test/ as their own projects.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['{common,controller,sidecar,sim-provider,proto,bin,cli,demo,scripts}/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'redis',
          include: [
            'test/redis/**/*.test.ts',
            'test/e2e/**/*.test.ts',
            'test/sim-provider/**/*.test.ts',
            'test/sidecar/**/*.test.ts',
          ],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'kube',
          include: ['test/kube/**/*.test.ts'],
          // Starts one etcd + kube-apiserver per run (building them first on a fresh machine).
          globalSetup: ['test/kube/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
