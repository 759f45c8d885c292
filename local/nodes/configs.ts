/**
 * The configuration files of a real local node: containerd (CRI v1 on its own
 * socket, root and state; overlayfs; runc with cgroupfs; the node's CNI
 * directory), the CNI bridge network, the kubelet (its own root dir, port,
 * cgroup root and pod-log dir; client certificates checked against the
 * cluster CA) and kube-proxy (iptables mode, Services for every node).
 * Pure text builders: no I/O.
 */
import { clusterCidr, hostAddress, type NodeLayout, pauseImage } from './layout.ts';

export function containerdConfig(n: NodeLayout): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `# containerd of local node ${n.name} (written by castellan cluster up)
version = 2
root = ${JSON.stringify(n.containerdRoot)}
state = ${JSON.stringify(n.containerdState)}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = ${JSON.stringify(n.containerdSocket)}

[ttrpc]
  address = ${JSON.stringify(`${n.containerdSocket}.ttrpc`)}

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = ${JSON.stringify(`${n.dir}/containerd/opt`)}

[${cri}]
  sandbox_image = ${JSON.stringify(pauseImage)}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  [${cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [${cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [${cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [${cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = ${JSON.stringify(n.cniConfDir)}
    max_conf_num = 1
`;
}

/** A bridge per node; the host routes between the bridges of the nodes. */
export function cniConfig(n: NodeLayout): string {
  return `${JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: n.name,
      plugins: [
        {
          type: 'bridge',
          bridge: n.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: n.podSubnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: n.ipamDir },
        },
      ],
    },
    null,
    2,
  )}\n`;
}

export function kubeletConfig(n: NodeLayout, caFile: string): string {
  return `${JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: hostAddress,
      port: n.kubeletPort,
      readOnlyPort: 0,
      healthzPort: 0,
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: caFile } },
      authorization: { mode: 'Webhook' },
      cgroupDriver: 'cgroupfs',
      cgroupRoot: n.cgroupRoot,
      cgroupsPerQOS: true,
      failSwapOn: false,
      failCgroupV1: false,
      containerRuntimeEndpoint: `unix://${n.containerdSocket}`,
      imageServiceEndpoint: `unix://${n.containerdSocket}`,
      podLogsDir: n.podLogsDir,
      resolvConf: '',
      registerNode: true,
      serializeImagePulls: false,
      // Imported images are never pulled again: keep them; evict only when the disk is really full.
      imageGCHighThresholdPercent: 99,
      imageGCLowThresholdPercent: 98,
      evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '2%', 'imagefs.available': '2%', 'nodefs.inodesFree': '2%' },
      shutdownGracePeriod: '0s',
      maxPods: 110,
      nodeStatusUpdateFrequency: '4s',
      syncFrequency: '10s',
    },
    null,
    2,
  )}\n`;
}

export function kubeProxyConfig(opts: { kubeconfig: string; hostname: string; healthzPort: number; metricsPort: number }): string {
  return `${JSON.stringify(
    {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      clientConnection: { kubeconfig: opts.kubeconfig },
      mode: 'iptables',
      clusterCIDR: clusterCidr,
      hostnameOverride: opts.hostname,
      bindAddress: hostAddress,
      healthzBindAddress: `127.0.0.1:${opts.healthzPort}`,
      metricsBindAddress: `127.0.0.1:${opts.metricsPort}`,
      nodePortAddresses: [`${hostAddress}/32`],
      // Leave the machine's conntrack sysctls alone.
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
      // Every Service connection is masqueraded, so replies between pods on one bridge return through the host.
      iptables: { masqueradeAll: true, syncPeriod: '10s', minSyncPeriod: '1s' },
    },
    null,
    2,
  )}\n`;
}
