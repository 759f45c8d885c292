/**
 * The image's /app tree (local/image/build.ts writeAppTree: tsc-compiled
 * JavaScript and production dependencies only) under .castellan/bench/, for
 * running the sidecar exactly as the image does without a container. Built
 * again only when the image's inputs changed (the same hash the image build
 * keys its cache on).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../common/paths.ts';
import { imageInputsHash, writeAppTree } from '../../local/image/build.ts';

export function imageAppTree(): string {
  const dir = join(projectRoot, '.castellan', 'bench');
  const app = join(dir, 'image-app');
  const stamp = join(dir, 'image-app.hash');
  const hash = imageInputsHash();
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === hash && existsSync(join(app, 'bin', 'castellan.js'))) return app;
  mkdirSync(dir, { recursive: true });
  writeAppTree(app);
  writeFileSync(stamp, hash);
  return app;
}
