import { defineConfig } from 'vite';

// Served by the binary under /ui; nothing is fetched from elsewhere at run time.
export default defineConfig({
  base: '/ui/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` against a local `just run`.
    proxy: Object.fromEntries(
      ['/events', '/services', '/dlq', '/health', '/metrics', '/openapi.json'].map((path) => [path, 'http://127.0.0.1:8080']),
    ),
  },
  test: { include: ['tests/**/*.test.ts'] },
});
