import { resolve } from 'node:path';
import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

const lib = (name: string) => resolve(__dirname, 'libs', name, 'src', 'index.ts');

export default defineConfig({
  // swc, not esbuild: NestJS needs decorator metadata.
  plugins: [swc.vite({ module: { type: 'es6' } })],
  resolve: {
    alias: {
      '@facesearch/common': lib('common'),
      '@facesearch/adapters': lib('adapters'),
      '@facesearch/core': lib('core'),
      '@facesearch/face-engine': lib('face-engine'),
      '@facesearch/proto': lib('proto'),
      '@facesearch/runtime': lib('runtime'),
    },
  },
  test: {
    include: ['apps/*/test/**/*.test.ts', 'libs/*/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
