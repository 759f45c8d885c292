// Jest 30 in ESM mode (@kubernetes/client-node is ESM-only), TypeScript through
// ts-jest in transpile-only mode; `npm run typecheck` does the type checking.
const base = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleFileExtensions: ['ts', 'js', 'json'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.jest.json' }],
  },
};

export default {
  projects: [
    { ...base, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...base,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      setupFilesAfterEnv: ['<rootDir>/test/harness/integration-timeout.ts'],
      slowTestThreshold: 60,
    },
    // Real nodes (containerd, kubelet, root): the last phase of `npm test` (scripts/test.sh), or alone: `npm run test:e2e`.
    { ...base, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.test.ts'], setupFilesAfterEnv: ['<rootDir>/test/harness/integration-timeout.ts'], slowTestThreshold: 300 },
  ],
};
