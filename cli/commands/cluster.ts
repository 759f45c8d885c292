/**
 * `castellan cluster up|down`: a local Kubernetes control plane (SPEC §4)
 * under .castellan/cluster, for trying the operator without a real cluster.
 */
import { join } from 'node:path';
import { KubeCluster } from '../../local/kube-cluster.ts';
import { parseFlags, UsageError } from '../usage.ts';

const help = `Usage: castellan cluster up|down [--nodes N]

Starts (up) or stops and removes (down) a local Kubernetes control plane:
kube-apiserver, kube-controller-manager, kube-scheduler and etcd, with kwok
simulating the nodes. "up" prints the kubeconfig path:

  export KUBECONFIG=$(castellan cluster up)

Options:
  --nodes N    fake nodes to create (default 3)
  -h, --help   show this help`;

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, { nodes: { type: 'string' } }, help, true);
  if (flags === undefined) return 0;
  const [action, ...extra] = flags.positionals;
  if (extra.length > 0 || (action !== 'up' && action !== 'down')) throw new UsageError(`expected "up" or "down"\n\n${help}`);
  const nodes = flags.values.nodes === undefined ? 3 : Number(flags.values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 100) throw new UsageError('--nodes must be a whole number from 1 to 100');
  const dir = join(process.cwd(), '.castellan', 'cluster');
  const opts = { name: 'castellan', workdir: join(dir, 'kwok'), kubeconfig: join(dir, 'kubeconfig'), nodes };
  if (action === 'up') {
    const cluster = await KubeCluster.create(opts);
    process.stdout.write(`${cluster.kubeconfig}\n`);
  } else {
    await KubeCluster.attach(opts).delete();
  }
  return 0;
}
