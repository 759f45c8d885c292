/**
 * Test harness for real pods (local/nodes/): the images they run, built the
 * way `castellan image build` builds them, plus a NATS image made from the
 * nats-server binary scripts/tools.sh built; kubectl helpers that wait for
 * conditions (never sleep-and-assert); and a NATS JetStream cluster of three
 * pods whose routes and client URLs are fixed Service addresses (a local
 * cluster has no DNS).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { buildImages } from '../../local/image/build.ts';
import type { TestKube } from './kube.ts';

/**
 * castellan:dev, castellan-examples:dev and castellan-nats:dev as `castellan image build --load` makes them, in
 * the same place (.castellan/images), so an unchanged tree reuses the archives (local/image/build.ts).
 */
export async function loadImages(kube: TestKube): Promise<{ images: { tag: string; bytes: number }[]; cached: boolean }> {
  const images = await buildImages(join(projectRoot, '.castellan', 'images'));
  for (const i of images) await kube.cluster.real.importImage(i.archive);
  return { images: images.map((i) => ({ tag: i.tag, bytes: i.bytes })), cached: images.cached === true };
}

export async function apply(kube: TestKube, yaml: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-apply-'));
  const file = join(dir, 'manifest.yaml');
  writeFileSync(file, yaml);
  await kube.cluster.kubectl(['apply', '--server-side', '--field-manager=castellan-test', '--force-conflicts', '-f', file], 60_000);
}

export interface PodInfo {
  name: string;
  uid: string;
  ip: string | undefined;
  node: string | undefined;
  ready: boolean;
  deleting: boolean;
}

export async function pods(kube: TestKube, namespace: string, selector: string): Promise<PodInfo[]> {
  const out = JSON.parse(await kube.cluster.kubectl(['get', 'pods', '-n', namespace, '-l', selector, '-o', 'json'])) as {
    items: {
      metadata: { name: string; uid: string; deletionTimestamp?: string };
      spec: { nodeName?: string };
      status: { podIP?: string; conditions?: { type: string; status: string }[] };
    }[];
  };
  return out.items.map((p) => ({
    name: p.metadata.name,
    uid: p.metadata.uid,
    ip: p.status.podIP,
    node: p.spec.nodeName,
    ready: (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    deleting: p.metadata.deletionTimestamp !== undefined,
  }));
}

/** Waits until exactly `count` pods match, all Ready and none terminating. */
export async function waitPodsReady(kube: TestKube, namespace: string, selector: string, count: number, timeoutMs = 300_000): Promise<PodInfo[]> {
  return waitFor(
    `${count} Ready pods ${selector} in ${namespace}`,
    async () => {
      const list = await pods(kube, namespace, selector).catch(() => []);
      return list.length === count && list.every((p) => p.ready && !p.deleting && p.ip !== undefined) ? list : undefined;
    },
    { timeoutMs, intervalMs: 1_000 },
  );
}

/** Service addresses of the three NATS servers of charts/castellan/examples/nats-local.yaml. */
export const natsServiceIps = ['10.96.10.1', '10.96.10.2', '10.96.10.3'];
export const natsUrls = natsServiceIps.map((ip) => `nats://${ip}:4222`);

/** The NATS manifest users apply to a local cluster (namespace nats), as documented. */
export function natsManifest(): string {
  return readFileSync(join(projectRoot, 'charts', 'castellan', 'examples', 'nats-local.yaml'), 'utf8');
}
