// Lint rules for the whole repository (typescript-eslint, type-aware where it matters).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', '.tools/**', '.castellan/**', 'dist/**', 'coverage/**', 'charts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'error',
    },
  },
  {
    // What the sidecar loads stays lean (issue 14: ≤ 80 MB idle): an ESM import of node:http
    // evaluates its lazy WebSocket getters and loads undici, http2 and worker_threads.
    files: ['sidecar/**/*.ts', 'common/**/*.ts', 'cli/**/*.ts'],
    ignores: ['common/node-http.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'node:http', message: 'Use `http` from common/node-http.ts (an ESM import of node:http costs 12-14 MB of RSS).', allowTypeImports: true },
            { name: 'http', message: 'Use `http` from common/node-http.ts (an ESM import of node:http costs 12-14 MB of RSS).', allowTypeImports: true },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      parserOptions: { projectService: false, project: false },
      globals: { process: 'readonly', console: 'readonly', require: 'readonly' },
    },
  },
  {
    files: ['test/**', 'scripts/**', 'bench/**', 'examples/**'],
    rules: { 'no-console': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
