/**
 * Container images without Docker: a layer is a deterministic tar of a staged
 * directory (sorted names, uid/gid 0, mtime 0, so the same input gives the same
 * digest and images share identical layers), and an image is a `docker save`
 * archive (manifest.json, the config JSON, the layer tars) that
 * `ctr images import` and `docker load` both read.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface Layer {
  /** Path of the uncompressed layer tar. */
  path: string;
  /** sha256 of the tar (the layer's diff id). */
  digest: string;
  bytes: number;
}

export interface ImageConfig {
  user: string;
  env: string[];
  workingDir: string;
  entrypoint?: string[];
  cmd?: string[];
  labels?: Record<string, string>;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Tars `dir` (its contents at /) into `out` deterministically. */
export async function layerFromDir(dir: string, out: string): Promise<Layer> {
  mkdirSync(dirname(out), { recursive: true });
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '--format=posix', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime', '-C', dir, '-cf', out, '.'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return { path: out, digest: await sha256File(out), bytes: statSync(out).size };
}

/** Writes a `docker save` style archive of one image with these layers (bottom first). */
export function writeImageArchive(out: string, tag: string, layers: Layer[], config: ImageConfig): { bytes: number } {
  const stage = mkdtempSync(join(tmpdir(), 'castellan-image-'));
  try {
    const cfg = {
      architecture: 'amd64',
      os: 'linux',
      config: {
        User: config.user,
        Env: config.env,
        WorkingDir: config.workingDir,
        ...(config.entrypoint !== undefined ? { Entrypoint: config.entrypoint } : {}),
        ...(config.cmd !== undefined ? { Cmd: config.cmd } : {}),
        Labels: config.labels ?? {},
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => `sha256:${l.digest}`) },
      history: layers.map(() => ({ created_by: 'castellan image build' })),
    };
    const cfgText = JSON.stringify(cfg);
    const cfgName = `${createHash('sha256').update(cfgText).digest('hex')}.json`;
    writeFileSync(join(stage, cfgName), cfgText);
    const layerNames = layers.map((l) => {
      mkdirSync(join(stage, l.digest), { recursive: true });
      // hard link (same file system) or copy, so the layer is not held twice on disk
      try {
        execFileSync('ln', [l.path, join(stage, l.digest, 'layer.tar')]);
      } catch {
        execFileSync('cp', [l.path, join(stage, l.digest, 'layer.tar')]);
      }
      return `${l.digest}/layer.tar`;
    });
    writeFileSync(join(stage, 'manifest.json'), JSON.stringify([{ Config: cfgName, RepoTags: [tag], Layers: layerNames }]));
    mkdirSync(dirname(out), { recursive: true });
    const tmp = `${out}.partial`;
    execFileSync('tar', ['--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', stage, '-cf', tmp, '.'], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(tmp, out);
    return { bytes: statSync(out).size };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}
