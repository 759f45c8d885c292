/**
 * Where Castellan finds its own files and the tools scripts/tools.sh builds.
 * `CASTELLAN_TOOLS_BIN` overrides the tool directory (default `.tools/bin`);
 * a tool missing there is looked up on PATH.
 */
import { existsSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root (the folder holding package.json). */
export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function toolsBinDir(): string {
  return process.env.CASTELLAN_TOOLS_BIN ?? join(projectRoot, '.tools', 'bin');
}

/** Absolute path of an external tool such as `nats-server` or `kwokctl`. */
export function toolPath(name: string): string {
  const local = join(toolsBinDir(), name);
  if (existsSync(local)) return local;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} not found in ${toolsBinDir()} or on PATH; run "npm run setup" (scripts/tools.sh) to build it`);
}
