/**
 * `castellan image build`: the Castellan image (`castellan:dev`), the examples
 * image (`castellan-examples:dev`) and the pod sandbox image real local nodes
 * need, assembled without Docker from what this machine already has:
 *
 * - runtime layer (shared by both images): this Node 24 binary, `/usr/bin/env`
 *   and the shared libraries `ldd` names for them, `/etc/passwd` with the
 *   non-root user 65532, an empty `/tmp`. No shell, no npm, no compiler.
 * - Castellan layer: the sources compiled by `tsc` to JavaScript
 *   (tsconfig.image.json) and bundled by esbuild (bundle.ts), `package.json`,
 *   and the production dependencies only — the packages package-lock.json
 *   does not mark `dev` — copied from node_modules; `castellan` on PATH.
 * - examples layer: examples/ (`node examples/counter/app.js` runs in /app).
 * - castellan-nats:dev: the pinned nats-server alone, for NATS pods in a local
 *   cluster, which has no registry to pull one from.
 *
 * The Dockerfile builds an equivalent Castellan image where Docker exists.
 *
 * A build is skipped when its inputs are unchanged: the archives in the output
 * directory are kept with the SHA-256 of everything they are made from (the
 * sources, examples, package files, tsconfigs, and which Node and
 * nats-server binaries), so a warm test run or a second `castellan image build` costs a
 * hash of the tree instead of a compile.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { projectRoot, toolPath } from '../../common/paths.ts';
import { type Layer, layerFromDir, writeImageArchive } from './archive.ts';
import { bundleApp } from './bundle.ts';

export const castellanImage = 'castellan:dev';
export const examplesImage = 'castellan-examples:dev';
/** The pinned nats-server (scripts/tools.sh) for NATS pods in a local cluster (charts/castellan/examples/nats-local.yaml). */
export const natsImage = 'castellan-nats:dev';
export const nonRootUser = '65532:65532';

export interface BuiltImage {
  tag: string;
  archive: string;
  /** Bytes of the archive (uncompressed layers). */
  bytes: number;
}

/** Absolute paths of the shared libraries and the loader a binary needs (from ldd). */
export function sharedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1] !== undefined) libs.push(m[1]);
  }
  return libs;
}

function copyInto(root: string, hostPath: string, imagePath = hostPath, mode?: number): void {
  const dest = join(root, imagePath);
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(realpathSync(hostPath), dest);
  if (mode !== undefined) chmodSync(dest, mode);
}

async function runtimeLayer(work: string): Promise<Layer> {
  const root = join(work, 'runtime');
  rmSync(root, { recursive: true, force: true });
  const node = process.execPath;
  const env = '/usr/bin/env';
  copyInto(root, node, '/usr/local/bin/node', 0o755);
  copyInto(root, env, env, 0o755);
  for (const lib of new Set([...sharedLibraries(node), ...sharedLibraries(env)])) copyInto(root, lib, lib, 0o755);
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnonroot:x:65532:\n');
  mkdirSync(join(root, 'tmp'), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  mkdirSync(join(root, 'home/nonroot'), { recursive: true });
  return layerFromDir(root, join(work, 'layers', 'runtime.tar'));
}

/** package-lock.json entries a production install has (not dev-only; type declarations are never loaded). */
export function productionPackages(lock: { packages?: Record<string, { dev?: boolean; devOptional?: boolean; link?: boolean }> }): string[] {
  return Object.entries(lock.packages ?? {})
    .filter(([path, p]) => path.startsWith('node_modules/') && p.dev !== true && p.devOptional !== true && p.link !== true && !/(^|\/)node_modules\/@types\//.test(path))
    .map(([path]) => path)
    .sort();
}

/** Files Node never loads at run time: source maps, type declarations, TypeScript sources, docs. */
export function runtimeFile(path: string): boolean {
  return !/\.(map|d\.ts|d\.mts|d\.cts|ts|mts|cts|md|markdown)$/.test(path);
}

/**
 * How the image runs Node (the Dockerfile sets the same): V8's young
 * generation capped at 1 MB semi-spaces (default up to 16 MB; an idle
 * object-host sidecar measured 100-104 MiB RSS with the default, 88-91 MiB
 * with 2 MB before the bundle, and the bundle's 78.5 MiB becomes 75-76.5 MiB
 * with 1 MB: a scavenge every megabyte of request garbage, each well under a
 * millisecond), and at most two glibc malloc arenas (Node's threads otherwise
 * each get one: ~4 MB less resident, measured).
 */
export const imageRuntimeEnv = { NODE_ENV: 'production', NODE_OPTIONS: '--max-semi-space-size=1', MALLOC_ARENA_MAX: '2' };

async function castellanLayer(work: string): Promise<Layer> {
  const root = join(work, 'castellan');
  rmSync(root, { recursive: true, force: true });
  writeAppTree(join(root, 'app'));
  mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
  symlinkSync('/app/bin/castellan.js', join(root, 'usr/local/bin/castellan'));
  return layerFromDir(root, join(work, 'layers', 'castellan.tar'));
}

/**
 * The image's /app: the sources compiled by tsc (tsconfig.image.json) and
 * bundled (bundle.ts) into `dist/`, package.json, `bin/castellan.js`, and the
 * production dependencies (the bundle's externals load from there).
 * Runnable as it is with this Node (`node <app>/bin/castellan.js`): the
 * benchmark measures the image's sidecar that way (bench/scenarios/memory.ts).
 */
export function writeAppTree(app: string): void {
  rmSync(app, { recursive: true, force: true });
  mkdirSync(app, { recursive: true });
  const compiled = `${app}.tsc`;
  rmSync(compiled, { recursive: true, force: true });
  const tsc = join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', join(projectRoot, 'tsconfig.image.json'), '--outDir', compiled], { stdio: ['ignore', 'pipe', 'pipe'], cwd: projectRoot });
  try {
    bundleApp(compiled, join(app, 'dist'));
  } finally {
    rmSync(compiled, { recursive: true, force: true });
  }
  const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { name: string; version: string; license?: string; dependencies?: Record<string, string> };
  writeFileSync(join(app, 'package.json'), `${JSON.stringify({ name: pkg.name, version: pkg.version, license: pkg.license, type: 'module', private: true, dependencies: pkg.dependencies }, null, 2)}\n`);
  mkdirSync(join(app, 'bin'), { recursive: true });
  writeFileSync(join(app, 'bin', 'castellan.js'), "#!/usr/bin/env node\n// The `castellan` command (the bundled JavaScript, local/image/bundle.ts).\nimport '../dist/main.js';\n");
  chmodSync(join(app, 'bin', 'castellan.js'), 0o755);
  const lock = JSON.parse(readFileSync(join(projectRoot, 'package-lock.json'), 'utf8')) as Parameters<typeof productionPackages>[0];
  for (const path of productionPackages(lock)) {
    const src = join(projectRoot, path);
    if (!existsSync(src)) continue; // an optional dependency for another platform
    // each package without its nested node_modules: nested packages are entries of their own
    cpSync(src, join(app, path), { recursive: true, filter: (s) => s === src || (!s.startsWith(`${src}/node_modules`) && runtimeFile(s)) });
  }
}

async function examplesLayer(work: string): Promise<Layer> {
  const root = join(work, 'examples');
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(root, 'app'), { recursive: true });
  cpSync(join(projectRoot, 'examples'), join(root, 'app', 'examples'), { recursive: true });
  writeFileSync(join(root, 'app', 'package.json'), '{"name":"castellan-examples","private":true,"type":"module"}\n');
  return layerFromDir(root, join(work, 'layers', 'examples.tar'));
}

const runtimeEnv = ['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_ENV=production', 'HOME=/home/nonroot'];

/** Directories and files of the project the images are made from (tsconfig.image.json includes, examples, package files). */
const imageInputs = ['cli', 'common', 'sidecar', 'operator', 'local', 'examples', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.image.json'];

function filesUnder(path: string): string[] {
  const st = statSync(path);
  if (!st.isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .filter((e) => e.name !== 'node_modules')
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((e) => filesUnder(join(path, e.name)));
}

/** SHA-256 over every input of the images: project files by path and content, the Node and nats-server binaries by path, size and time (they live in versioned tool directories). */
export function imageInputsHash(): string {
  const h = createHash('sha256');
  for (const top of imageInputs) {
    const abs = join(projectRoot, top);
    if (!existsSync(abs)) continue;
    for (const f of filesUnder(abs)) h.update(relative(projectRoot, f)).update('\0').update(readFileSync(f)).update('\0');
  }
  for (const bin of [process.execPath, toolPath('nats-server')]) {
    const real = realpathSync(bin);
    const st = statSync(real);
    h.update(`${real}\0${st.size}\0${st.mtimeMs}\0`);
  }
  return h.digest('hex');
}

/**
 * Builds castellan:dev, castellan-examples:dev and castellan-nats:dev into
 * `outDir`, or returns the archives already there when their inputs are
 * unchanged (`cached: true`).
 */
export async function buildImages(outDir: string): Promise<BuiltImage[] & { cached?: boolean }> {
  const hash = imageInputsHash();
  const stamp = join(outDir, 'images.json');
  if (existsSync(stamp)) {
    const prev = JSON.parse(readFileSync(stamp, 'utf8')) as { hash: string; images: BuiltImage[] };
    if (prev.hash === hash && prev.images.every((i) => existsSync(i.archive) && statSync(i.archive).size > 0)) return Object.assign(prev.images, { cached: true });
  }
  rmSync(stamp, { force: true });
  const images = await buildAll(outDir);
  writeFileSync(stamp, `${JSON.stringify({ hash, images }, null, 2)}\n`);
  return images;
}

async function buildAll(outDir: string): Promise<BuiltImage[]> {
  const work = join(outDir, 'work');
  mkdirSync(work, { recursive: true });
  const runtime = await runtimeLayer(work);
  const castellan = await castellanLayer(work);
  const examples = await examplesLayer(work);
  const images: BuiltImage[] = [];
  const c = join(outDir, 'castellan.tar');
  images.push({
    tag: castellanImage,
    archive: c,
    ...writeImageArchive(c, castellanImage, [runtime, castellan], {
      user: nonRootUser,
      env: [...runtimeEnv, 'CASTELLAN_LOG_LEVEL=info', `NODE_OPTIONS=${imageRuntimeEnv.NODE_OPTIONS}`, `MALLOC_ARENA_MAX=${imageRuntimeEnv.MALLOC_ARENA_MAX}`],
      workingDir: '/app',
      entrypoint: ['castellan'],
      cmd: ['--help'],
      labels: { 'org.opencontainers.image.title': 'castellan' },
    }),
  });
  const e = join(outDir, 'castellan-examples.tar');
  images.push({
    tag: examplesImage,
    archive: e,
    ...writeImageArchive(e, examplesImage, [runtime, examples], {
      user: nonRootUser,
      env: runtimeEnv,
      workingDir: '/app',
      cmd: ['node', 'examples/counter/app.js'],
      labels: { 'org.opencontainers.image.title': 'castellan-examples' },
    }),
  });
  const natsRoot = join(work, 'nats');
  copyInto(natsRoot, toolPath('nats-server'), '/nats-server', 0o755);
  mkdirSync(join(natsRoot, 'data'), { recursive: true });
  const nats = await layerFromDir(natsRoot, join(work, 'layers', 'nats.tar'));
  const n = join(outDir, 'castellan-nats.tar');
  images.push({ tag: natsImage, archive: n, ...writeImageArchive(n, natsImage, [nats], { user: nonRootUser, env: [], workingDir: '/', entrypoint: ['/nats-server'] }) });
  rmSync(work, { recursive: true, force: true });
  return images;
}

/** The pod sandbox image (registry.k8s.io/pause:3.10) from the `pause` binary scripts/tools.sh builds. */
export async function buildPauseImage(outDir: string, tag: string): Promise<BuiltImage> {
  const work = join(outDir, 'pause-work');
  rmSync(work, { recursive: true, force: true });
  copyInto(join(work, 'root'), toolPath('pause'), '/pause', 0o755);
  const layer = await layerFromDir(join(work, 'root'), join(work, 'pause.tar'));
  const archive = join(outDir, 'pause.tar');
  const { bytes } = writeImageArchive(archive, tag, [layer], { user: '65535:65535', env: [], workingDir: '/', entrypoint: ['/pause'] });
  rmSync(work, { recursive: true, force: true });
  return { tag, archive, bytes };
}
