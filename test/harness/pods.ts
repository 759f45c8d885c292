/**
 * Test harness for real pods (local/nodes/): the images they run, built the
 * way `castellan image build` builds them, plus a NATS image made from the
 * nats-server binary scripts/tools.sh built; kubectl helpers that wait for
 * conditions (never sleep-and-assert); and a NATS JetStream cluster of three
 * pods whose routes and client URLs are fixed Service addresses (a local
 * cluster has no DNS).
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../common/net.ts';
import { toolPath } from '../../common/paths.ts';
import { layerFromDir, writeImageArchive } from '../../local/image/archive.ts';
import { buildImages } from '../../local/image/build.ts';
import type { TestKube } from './kube.ts';

export const natsImage = 'castellan-test/nats:dev';

/** castellan:dev, castellan-examples:dev and the test NATS image, imported into every real node. */
export async function loadImages(kube: TestKube, dir: string): Promise<{ tag: string; bytes: number }[]> {
  const images = await buildImages(join(dir, 'images'));
  const root = join(dir, 'nats-root');
  mkdirSync(join(root, 'data'), { recursive: true });
  copyFileSync(toolPath('nats-server'), join(root, 'nats-server'));
  chmodSync(join(root, 'nats-server'), 0o755);
  const layer = await layerFromDir(root, join(dir, 'nats-layer.tar'));
  const natsArchive = join(dir, 'images', 'nats.tar');
  const nats = writeImageArchive(natsArchive, natsImage, [layer], { user: '65532:65532', env: [], workingDir: '/', entrypoint: ['/nats-server'] });
  for (const a of [...images.map((i) => i.archive), natsArchive]) await kube.cluster.real.importImage(a);
  return [...images.map((i) => ({ tag: i.tag, bytes: i.bytes })), { tag: natsImage, bytes: nats.bytes }];
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

/** Service addresses of the three NATS servers (fixed, so routes and URLs need no DNS). */
export const natsServiceIps = ['10.96.10.1', '10.96.10.2', '10.96.10.3'];
export const natsUrls = natsServiceIps.map((ip) => `nats://${ip}:4222`);

/** A 3-server NATS JetStream (sync_interval: always) as a StatefulSet, one Service per server. */
export function natsManifest(namespace: string): string {
  const routes = natsServiceIps.map((ip) => `nats://${ip}:6222`).join(', ');
  const services = natsServiceIps
    .map(
      (ip, i) => `---
apiVersion: v1
kind: Service
metadata: {name: nats-${i}, namespace: ${namespace}}
spec:
  clusterIP: ${ip}
  selector: {statefulset.kubernetes.io/pod-name: nats-${i}}
  ports: [{name: client, port: 4222}, {name: cluster, port: 6222}]
`,
    )
    .join('');
  return `apiVersion: v1
kind: Namespace
metadata: {name: ${namespace}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: nats, namespace: ${namespace}}
data:
  nats.conf: |
    port: 4222
    server_name: $POD_NAME
    max_payload: 8MB
    jetstream { store_dir: /data, sync_interval: always }
    cluster { name: e2e, port: 6222, routes: [${routes}] }
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: nats, namespace: ${namespace}}
spec:
  serviceName: nats
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: nats}}
  template:
    metadata: {labels: {app: nats}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532}
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: nats}}}
      containers:
        - name: nats
          image: ${natsImage}
          imagePullPolicy: Never
          args: ["-c", "/etc/nats/nats.conf"]
          env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
          ports: [{name: client, containerPort: 4222}, {name: cluster, containerPort: 6222}]
          volumeMounts: [{name: config, mountPath: /etc/nats}, {name: data, mountPath: /data}]
      volumes:
        - {name: config, configMap: {name: nats}}
        - {name: data, emptyDir: {}}
${services}`;
}
