/**
 * The image's JavaScript as a bundle: the tsc output of the sources and the
 * production dependencies joined by esbuild into `dist/main.js` plus the
 * chunks its commands load on demand (`castellan sidecar` loads only what the
 * sidecar needs), whitespace and syntax minified, names kept.
 *
 * Why: a sidecar loaded as ~640 separate modules keeps each module's record
 * and whole source text in its heap, and Node's loader resolves every one of
 * them at start-up, hot enough that V8 optimises the loader itself — the
 * idle sidecar measured 85–88 MiB RSS against the 80 MB budget (issue 14);
 * the bundle loads a handful of files and a third of the source bytes
 * (bench/RESULTS.md has the measured numbers).
 *
 * What stays outside, loaded from /app/node_modules at run time:
 * the packages in `bundleExternal` and whatever the code requires by a computed name
 * (`yaml`, common/config.ts). The banner gives bundled CommonJS packages a
 * real `require` for Node's builtins. Stack traces name functions as in the
 * sources; positions are in the bundle.
 *
 * Used by local/image/build.ts (the image `castellan image build` makes) and
 * by the Dockerfile (`node local/image/bundle.ts <compiled> <app>/dist`).
 */
import { buildSync } from 'esbuild';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Packages the bundle leaves to node_modules: the operator's Kubernetes
 * client; iconv-lite (body-parser's charset decoder: bundled, its encoding
 * tables — half a megabyte of source read only for a body that is not UTF-8
 * — would sit in every sidecar's heap; from node_modules they load on that
 * first body); and esbuild itself (a native binary, reached only by
 * `castellan image build`, which needs the source checkout anyway).
 */
export const bundleExternal = ['@kubernetes/client-node', 'esbuild', 'iconv-lite'];

/** Bundles the CLI compiled into `compiled` (tsc's outDir) into `outDir`: `main.js` and its chunks. */
export function bundleApp(compiled: string, outDir: string): void {
  rmSync(outDir, { recursive: true, force: true });
  buildSync({
    entryPoints: { main: join(compiled, 'cli', 'main.js') },
    outdir: outDir,
    // chunks beside main.js: `dirname(import.meta.url)/..` stays the app's root (common/paths.ts)
    chunkNames: '[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    external: bundleExternal,
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'eof',
    banner: { js: "import { createRequire as __castellanCreateRequire } from 'node:module'; const require = __castellanCreateRequire(import.meta.url);" },
    logLevel: 'error',
  });
}

if (import.meta.main) {
  const [compiled, outDir] = process.argv.slice(2);
  if (compiled === undefined || outDir === undefined) {
    process.stderr.write('usage: node local/image/bundle.ts <compiled tree> <out dir>\n');
    process.exit(2);
  }
  bundleApp(compiled, outDir);
}
