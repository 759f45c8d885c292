/**
 * What real nodes change on this machine, and how each change is undone:
 * the `cstl-host` bridge holding the host address, IPv4 forwarding, a cgroup
 * parent per node, the node bridges, the mounts containerd and the kubelet make
 * under the work directory, the pod network namespaces, the CNI result cache
 * and the iptables chains kube-proxy and the kubelets create (`KUBE-*`).
 * `teardownHost` is synchronous and idempotent (it runs from `down`, from a
 * failed `up` and from exit hooks) and removes only what carries this
 * cluster's names or lies under its work directory, plus the pod network
 * namespaces and `KUBE-*` chains that appeared after `up` began (their
 * baselines are recorded by `prepareHostNetwork`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostAddress, hostBridge, iptablesBaselinePath, type NodeLayout, netnsBaselinePath } from './layout.ts';

const cgroupFs = '/sys/fs/cgroup';
const netnsDir = '/run/netns';

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
}

function quiet(cmd: string, args: string[]): boolean {
  try {
    sh(cmd, args);
    return true;
  } catch {
    return false;
  }
}

export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** The host address bridge, forwarding, bridge netfilter; records the network namespaces present now. */
export function prepareHostNetwork(workdir: string): void {
  if (linkExists(hostBridge)) {
    throw new Error(`a local cluster with real nodes already runs on this machine (interface ${hostBridge} exists); stop it with "castellan cluster down" first`);
  }
  mkdirSync(join(workdir, 'nodes'), { recursive: true });
  writeFileSync(iptablesBaselinePath(workdir), JSON.stringify(kubeChains()));
  writeFileSync(netnsBaselinePath(workdir), JSON.stringify(listNetns()));
  sh('ip', ['link', 'add', hostBridge, 'type', 'bridge']);
  sh('ip', ['addr', 'add', `${hostAddress}/32`, 'dev', hostBridge]);
  sh('ip', ['link', 'set', hostBridge, 'up']);
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
  if (!existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables')) quiet('modprobe', ['br_netfilter']);
  if (existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables')) writeFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', '1');
}

const iptablesFamilies = [
  ['iptables-save', 'iptables'],
  ['ip6tables-save', 'ip6tables'],
] as const;

/** `KUBE-*` chains on this machine as `command table chain` (IPv4 and, where available, IPv6). */
export function kubeChains(): string[] {
  const out: string[] = [];
  for (const [save, cmd] of iptablesFamilies) {
    let text: string;
    try {
      text = sh(save, []);
    } catch {
      continue; // not installed, or no such family here
    }
    let table = '';
    for (const line of text.split('\n')) {
      if (line.startsWith('*')) table = line.slice(1).trim();
      const m = /^:(KUBE-\S+)/.exec(line);
      if (m?.[1] !== undefined) out.push(`${cmd} ${table} ${m[1]}`);
    }
  }
  return out.sort();
}

function newKubeChains(workdir: string): string[] {
  const file = iptablesBaselinePath(workdir);
  if (!existsSync(file)) return [];
  const before = new Set(JSON.parse(readFileSync(file, 'utf8')) as string[]);
  return kubeChains().filter((c) => !before.has(c));
}

/** The words of an iptables-save rule line (double-quoted words, e.g. comments, kept whole). */
export function ruleWords(line: string): string[] {
  const words: string[] = [];
  for (const m of line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] as string));
  return words;
}

/**
 * Removes `KUBE-*` chains that appeared since `up` (what kube-proxy --cleanup
 * leaves, e.g. the kubelets' KUBE-FIREWALL with its jumps from INPUT and
 * OUTPUT): the rules jumping to them first, then their rules, then the chains.
 */
function removeNewKubeChains(workdir: string): void {
  const chains = newKubeChains(workdir).map((c) => c.split(' ') as [string, string, string]);
  const names = new Set(chains.map(([, , chain]) => chain));
  for (const [cmd, table] of [...new Set(chains.map(([c, t]) => `${c} ${t}`))].map((k) => k.split(' ') as [string, string])) {
    let text: string;
    try {
      text = sh(`${cmd}-save`, ['-t', table]);
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      if (!line.startsWith('-A ')) continue;
      const words = ruleWords(line);
      const j = words.findIndex((w) => w === '-j' || w === '--jump');
      const target = j >= 0 ? words[j + 1] : undefined;
      if (target !== undefined && names.has(target) && !names.has(words[1] ?? '')) quiet(cmd, ['-t', table, '-D', ...words.slice(1)]);
    }
  }
  for (const [cmd, table, chain] of chains) quiet(cmd, ['-t', table, '-F', chain]);
  for (const [cmd, table, chain] of chains) quiet(cmd, ['-t', table, '-X', chain]);
}

function listNetns(): string[] {
  return existsSync(netnsDir) ? readdirSync(netnsDir) : [];
}

/** The v1 hierarchies (or the single v2 one) a cgroup path must exist in. */
function cgroupHierarchies(): string[] {
  if (existsSync(join(cgroupFs, 'cgroup.controllers'))) return [cgroupFs];
  return readdirSync(cgroupFs)
    .map((d) => join(cgroupFs, d))
    .filter((d) => existsSync(join(d, 'cgroup.procs')));
}

/** kubelet --cgroup-root must exist; cpuset children start empty, so they get the parent's CPUs and memory nodes. */
export function createCgroupRoot(path: string): void {
  for (const h of cgroupHierarchies()) {
    const dir = join(h, path);
    mkdirSync(dir, { recursive: true });
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const own = join(dir, f);
      if (existsSync(own) && readFileSync(own, 'utf8').trim() === '') writeFileSync(own, readFileSync(join(h, f), 'utf8'));
    }
  }
}

function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {
    // still has a process; reported by the caller's check
  }
}

/** Mount points under `dir` (deepest first), from this mount namespace's table. */
export function mountsUnder(dir: string): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .map((p) => p.replace(/\\040/g, ' '))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

export interface Leftovers {
  mounts: string[];
  links: string[];
  netns: string[];
  cgroups: string[];
  /** `KUBE-*` iptables chains created since `up`. */
  iptables: string[];
}

/** What of this cluster is still on the machine (empty after a clean `down`). */
export function leftovers(workdir: string, nodes: NodeLayout[]): Leftovers {
  return {
    mounts: mountsUnder(workdir),
    links: [hostBridge, ...nodes.map((n) => n.bridge)].filter(linkExists),
    netns: newNetns(workdir),
    cgroups: nodes.flatMap((n) => cgroupHierarchies().map((h) => join(h, n.cgroupRoot))).filter(existsSync),
    iptables: newKubeChains(workdir),
  };
}

function newNetns(workdir: string): string[] {
  const file = [netnsBaselinePath(workdir), doneMarker(workdir)].find(existsSync);
  if (file === undefined) return [];
  const before = new Set(JSON.parse(readFileSync(file, 'utf8')) as string[]);
  return listNetns().filter((n) => n.startsWith('cni-') && !before.has(n));
}

/** Once torn down, the baseline is kept under this name (leftovers() still compares against it). */
function doneMarker(workdir: string): string {
  return `${netnsBaselinePath(workdir)}.done`;
}

/**
 * Undoes everything above for these nodes; run after their processes are gone.
 * Does nothing unless this work directory's `up` got past its own check (so a
 * refused second cluster never removes the first one's bridge).
 */
export function teardownHost(workdir: string, nodes: NodeLayout[], kubeProxyCleanup: (() => void) | undefined): void {
  if (!existsSync(netnsBaselinePath(workdir))) return;
  kubeProxyCleanup?.();
  removeNewKubeChains(workdir);
  for (const ns of newNetns(workdir)) {
    if (!quiet('ip', ['netns', 'delete', ns])) {
      quiet('umount', [join(netnsDir, ns)]);
      rmSync(join(netnsDir, ns), { force: true });
    }
  }
  for (const m of mountsUnder(workdir)) if (!quiet('umount', [m])) quiet('umount', ['-l', m]);
  for (const n of nodes) {
    if (linkExists(n.bridge)) quiet('ip', ['link', 'delete', n.bridge]);
    for (const h of cgroupHierarchies()) removeCgroupTree(join(h, n.cgroupRoot));
    const cache = '/var/lib/cni/results';
    if (existsSync(cache)) for (const f of readdirSync(cache)) if (f.startsWith(`${n.name}-`)) rmSync(join(cache, f), { force: true });
  }
  if (linkExists(hostBridge)) quiet('ip', ['link', 'delete', hostBridge]);
  renameSync(netnsBaselinePath(workdir), doneMarker(workdir));
}
