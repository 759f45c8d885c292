/**
 * Where each piece of a real local node lives: names, directories, ports and
 * addresses, derived from the cluster's work directory and the node's index.
 * Pure functions, no I/O, so `up` and `down` (another process, later) agree
 * on every path and name without any state beyond the work directory.
 *
 * All real nodes of a cluster share this machine's network namespace: each
 * node has its own bridge and pod subnet (10.244.<i>.0/24), the host routes
 * between the bridges, one kube-proxy programs Services for all of them, and
 * the nodes and the API server are reached on one host address on a bridge
 * Castellan creates (never on the machine's own interfaces). Because bridge
 * names, subnets and iptables chains are machine-wide, one real-node cluster
 * runs per machine at a time (`up` refuses a second one).
 */
import { join } from 'node:path';

/** The address of the host on the `cstl-host` bridge: node InternalIP and the API server's advertise address. */
export const hostAddress = '10.243.0.1';
export const hostBridge = 'cstl-host';
/** Pods of node i get 10.244.i.0/24. */
export const clusterCidr = '10.244.0.0/16';
/** Services; the API server's own Service is the first address. */
export const serviceCidr = '10.96.0.0/16';
export const kubernetesServiceIp = '10.96.0.1';
/** The sandbox image containerd runs for every pod (built locally: scripts/tools.sh pause). */
export const pauseImage = 'registry.k8s.io/pause:3.10';

export interface NodeLayout {
  index: number;
  name: string;
  dir: string;
  /** containerd: config, root and state, gRPC socket. */
  containerdConfig: string;
  containerdRoot: string;
  containerdState: string;
  containerdSocket: string;
  /** kubelet: config, --root-dir, serving certificates, pod logs. */
  kubeletConfig: string;
  kubeletRoot: string;
  kubeletCertDir: string;
  podLogsDir: string;
  kubeletPort: number;
  /** CNI: config directory, IPAM data, bridge and subnet. */
  cniConfDir: string;
  ipamDir: string;
  bridge: string;
  podSubnet: string;
  /** The node's cgroup parent (kubelet --cgroup-root), so two kubelets never share one. */
  cgroupRoot: string;
  logDir: string;
}

/** Maximum real nodes on one machine (subnets 10.244.0-63). */
export const maxRealNodes = 64;

export function nodeLayout(workdir: string, cluster: string, index: number): NodeLayout {
  const dir = join(workdir, 'nodes', String(index));
  return {
    index,
    name: `${cluster}-node-${index}`,
    dir,
    containerdConfig: join(dir, 'containerd.toml'),
    containerdRoot: join(dir, 'containerd', 'root'),
    containerdState: join(dir, 'containerd', 'state'),
    containerdSocket: join(dir, 'containerd.sock'),
    kubeletConfig: join(dir, 'kubelet.yaml'),
    kubeletRoot: join(dir, 'kubelet'),
    kubeletCertDir: join(dir, 'kubelet-pki'),
    podLogsDir: join(dir, 'pod-logs'),
    kubeletPort: 10250 + index,
    cniConfDir: join(dir, 'net.d'),
    ipamDir: join(dir, 'ipam'),
    bridge: `cstl${index}`,
    podSubnet: `10.244.${index}.0/24`,
    cgroupRoot: `/castellan-${cluster}-node-${index}`,
    logDir: join(workdir, 'logs'),
  };
}

/** Files of the processes `up` starts and `down` stops (one pid file each). */
export function pidDir(workdir: string): string {
  return join(workdir, 'nodes', 'pids');
}

export function kubeProxyConfigPath(workdir: string): string {
  return join(workdir, 'nodes', 'kube-proxy.yaml');
}

/** `KUBE-*` iptables chains that existed before `up` (local/nodes/host.ts kubeChains). */
export function iptablesBaselinePath(workdir: string): string {
  return join(workdir, 'nodes', 'iptables-before.json');
}

/** Network namespaces that existed before `up` (containerd names its pod namespaces cni-<uuid>). */
export function netnsBaselinePath(workdir: string): string {
  return join(workdir, 'nodes', 'netns-before.json');
}
