// Lint rules: typescript-eslint's recommended set, plus the project habits from STYLE.md
// that a linter can check (no process.env outside config loaders).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      '.tools/**',
      'proto/gen/**',
      'coverage/**',
      'bench/.scratch/**',
      '.ci/out/**',
      'dist/**',
    ],
  },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': [
        'error',
        {
          object: 'process',
          property: 'env',
          message: "Read configuration through the binary's loadConfig(env).",
        },
      ],
    },
  },
  {
    files: [
      '**/config.ts',
      '**/*.test.ts',
      'test/**',
      'bench/**',
      'scripts/**',
      'bin/**',
      'vitest.config.ts',
    ],
    rules: { 'no-restricted-properties': 'off' },
  },
);
