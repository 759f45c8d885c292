/**
 * `castellan cluster up|down`: a local Kubernetes (SPEC §4) under
 * .castellan/cluster: a real control plane, N real nodes on which pods run
 * (kubelet, containerd, runc, CNI bridge, kube-proxy; needs root) and M kwok
 * fake nodes for cheap scale tests.
 */
import { join } from 'node:path';
import { KubeCluster } from '../../local/kube-cluster.ts';
import { maxRealNodes } from '../../local/nodes/layout.ts';
import { parseFlags, UsageError } from '../usage.ts';

const help = `Usage: castellan cluster up [--nodes N] [--fake-nodes M] | castellan cluster down

"up" starts a local Kubernetes: kube-apiserver, kube-controller-manager,
kube-scheduler and etcd, N real nodes (kubelet + containerd + runc + a CNI
bridge, kube-proxy for Services; pods really run, from images imported with
"castellan image build --load") and M kwok fake nodes (no containers; their
taint keeps ordinary pods off them). It prints the kubeconfig path:

  export KUBECONFIG=$(castellan cluster up --nodes 2)

"down" stops everything and leaves no process, mount, bridge or network
namespace behind. Real nodes need root, containerd, runc and the CNI plugins
(sudo scripts/tools.sh node-runtime); one cluster with real nodes runs per machine.

Options:
  --nodes N        real nodes (default 1; 0 for a control plane with fake nodes only)
  --fake-nodes M   kwok fake nodes (default 0, or 3 with --nodes 0)
  -h, --help       show this help`;

function count(value: string | undefined, flag: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new UsageError(`${flag} must be a whole number from 0 to ${max}`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, { nodes: { type: 'string' }, 'fake-nodes': { type: 'string' } }, help, true);
  if (flags === undefined) return 0;
  const [action, ...extra] = flags.positionals;
  if (extra.length > 0 || (action !== 'up' && action !== 'down')) throw new UsageError(`expected "up" or "down"\n\n${help}`);
  const realNodes = count(flags.values.nodes, '--nodes', maxRealNodes) ?? 1;
  const fakeNodes = count(flags.values['fake-nodes'], '--fake-nodes', 1000) ?? (realNodes === 0 ? 3 : 0);
  if (realNodes + fakeNodes === 0) throw new UsageError('a cluster needs at least one node (--nodes or --fake-nodes)');
  const dir = join(process.cwd(), '.castellan', 'cluster');
  const opts = { name: 'castellan', workdir: join(dir, 'kwok'), kubeconfig: join(dir, 'kubeconfig'), nodes: fakeNodes, realNodes };
  if (action === 'up') {
    const cluster = await KubeCluster.create(opts);
    process.stdout.write(`${cluster.kubeconfig}\n`);
  } else {
    await KubeCluster.attach(opts).delete();
  }
  return 0;
}
