/**
 * Declarative JetStream assets of a replicated queue (names.ts has the layout):
 * the meta stream (R3, falling back to 1 on a 1-node NATS) with the config
 * record, and one host stream per configured host. Host streams are R1 and,
 * when the NATS servers carry the `node:<server name>` tags local/nats-cluster.ts
 * gives them, placed on distinct servers (host ordinal i → server i mod n), so
 * the R replicas of a message live on R distinct hosts AND servers.
 *
 * `ensureQueueAssets` is idempotent (create or update); the operator calls it
 * for every ReplicatedQueue, and each queue host calls it for itself at start.
 * `deleteQueueAssets` removes every stream of the queue (deletionPolicy Delete).
 */
import { jetstreamManager, JetStreamApiError, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError, logger, type Logger } from '../../common/logger.ts';
import { queueNames, type QueueNames } from './names.ts';
import { hostPods, queueSpecSchema, type ConfigRecord, type QueueSpec } from './spec.ts';

export interface QueueAssetsTarget {
  /** Subject/stream prefix (CASTELLAN_NATS_PREFIX, default `castellan`). */
  prefix: string;
  namespace: string;
}

export interface EnsureOptions {
  /** Replicas of the meta stream (default 3; 1 when the cluster is smaller). */
  metaReplicas?: number;
  /** Host pods to create streams for (default `<name>-0 … <name>-(hosts-1)`). */
  pods?: string[];
  /** Recorded in the config record (default `operator`). */
  by?: string;
  /** Do not overwrite an existing config record (a queue host starting without operator). */
  keepExistingConfig?: boolean;
  log?: Logger;
}

const JS_STREAM_NOT_FOUND = 10059;
const JS_INSUFFICIENT_RESOURCES = 10023;
const JS_REPLICAS_NOT_SUPPORTED = 10074;
const JS_NO_SUITABLE_PEERS = 10005;

/** A manager with a generous timeout (R3 stream creation takes a while on a busy machine). */
export function adminManager(nc: NatsConnection): Promise<JetStreamManager> {
  return jetstreamManager(nc, { timeout: 15_000, checkAPI: false });
}

function codeOf(err: unknown): number {
  return err instanceof JetStreamApiError ? err.code : 0;
}

/** Creates the stream or updates its mutable settings; returns the replicas it has. */
async function upsertStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }, log: Logger): Promise<void> {
  let existing: StreamConfig | undefined;
  try {
    existing = (await jsm.streams.info(config.name)).config;
  } catch (err) {
    if (codeOf(err) !== JS_STREAM_NOT_FOUND) throw err;
  }
  if (existing !== undefined) {
    const changed = (['max_age', 'description'] as const).some((k) => config[k] !== undefined && config[k] !== existing[k]);
    if (changed) await jsm.streams.update(config.name, { ...existing, max_age: config.max_age ?? existing.max_age, description: config.description ?? existing.description });
    return;
  }
  let cfg = { ...config };
  for (;;) {
    try {
      await jsm.streams.add(cfg);
      log.info('created queue stream', { stream: cfg.name, replicas: cfg.num_replicas, placement: cfg.placement?.tags });
      return;
    } catch (err) {
      const code = codeOf(err);
      const text = describeError(err);
      if (/already in use|already exists/i.test(text)) return;
      if ((cfg.num_replicas ?? 1) > 1 && (code === JS_INSUFFICIENT_RESOURCES || code === JS_REPLICAS_NOT_SUPPORTED || code === JS_NO_SUITABLE_PEERS)) {
        log.warn('cluster too small for the requested stream replicas; using 1', { stream: cfg.name });
        cfg = { ...cfg, num_replicas: 1 };
        continue;
      }
      if (cfg.placement !== undefined && (code === JS_NO_SUITABLE_PEERS || code === JS_INSUFFICIENT_RESOURCES || /no suitable peers|placement/i.test(text))) {
        log.warn('server tag placement not available; placing freely', { stream: cfg.name, tags: cfg.placement.tags });
        const { placement: _drop, ...rest } = cfg;
        cfg = rest;
        continue;
      }
      throw err;
    }
  }
}

/** Server names of the NATS cluster, learned from the meta stream's peers (sorted). */
async function serverNames(jsm: JetStreamManager, metaStream: string): Promise<string[]> {
  try {
    const info = await jsm.streams.info(metaStream);
    const names = [info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((r) => r.name)].filter((n): n is string => typeof n === 'string' && n !== '');
    return [...new Set(names)].sort();
  } catch {
    return [];
  }
}

/** Placement of host pod `<name>-<i>` on server i mod n, when the cluster tags servers `node:<name>`. */
function placementFor(pod: string, servers: string[]): { tags: string[] } | undefined {
  const m = /-(\d+)$/.exec(pod);
  if (m === null || servers.length < 2) return undefined;
  return { tags: [`node:${servers[Number(m[1]) % servers.length] as string}`] };
}

export function metaStreamConfig(n: QueueNames, spec: QueueSpec, replicas: number): Partial<StreamConfig> & { name: string } {
  return {
    name: n.metaStream,
    subjects: [n.metaAll],
    num_replicas: replicas,
    max_msgs_per_subject: 1,
    allow_direct: true,
    allow_msg_ttl: true,
    description: `Castellan replicated queue ${spec.name}: config, host leases, promotion claims, pending deletes, dedup markers`,
  };
}

export function hostStreamConfig(n: QueueNames, spec: QueueSpec, pod: string, placement: { tags: string[] } | undefined): Partial<StreamConfig> & { name: string } {
  return {
    name: n.hostStream(pod),
    subjects: [n.hostAll(pod)],
    num_replicas: 1,
    max_msgs_per_subject: 1,
    allow_direct: true,
    // Retention is enforced per message by the host; max_age is a backstop a little later.
    max_age: (spec.messageRetentionMs + 3_600_000) * 1_000_000,
    description: `Castellan replicated queue ${spec.name}: replicas stored by queue host ${pod}`,
    ...(placement === undefined ? {} : { placement: placement as StreamConfig['placement'] }),
  };
}

/** Ensures one host stream (a queue host calls this for itself). */
export async function ensureHostStream(nc: NatsConnection, target: QueueAssetsTarget, spec: QueueSpec, pod: string, log: Logger): Promise<void> {
  const n = queueNames(target.prefix, target.namespace, spec.name);
  const jsm = await adminManager(nc);
  const servers = await serverNames(jsm, n.metaStream);
  const p = placementFor(pod, servers);
  await upsertStream(jsm, hostStreamConfig(n, spec, pod, p), log);
}

/** Writes the config record (any writer; last one wins). */
export async function writeQueueConfig(nc: NatsConnection, target: QueueAssetsTarget, spec: QueueSpec, by: string): Promise<void> {
  const n = queueNames(target.prefix, target.namespace, spec.name);
  const jsm = await adminManager(nc);
  const record: ConfigRecord = { v: 1, spec, by, ts: Date.now() };
  await jsm.jetstream().publish(n.config, JSON.stringify(record), { timeout: 10_000 });
}

/** Reads the config record; undefined when the queue does not exist. */
export async function readQueueConfig(jsm: JetStreamManager, n: QueueNames): Promise<ConfigRecord | undefined> {
  try {
    const m = await jsm.streams.getMessage(n.metaStream, { last_by_subj: n.config });
    if (m === null) return undefined;
    return JSON.parse(new TextDecoder().decode(m.data)) as ConfigRecord;
  } catch (err) {
    if (codeOf(err) === JS_STREAM_NOT_FOUND || /stream not found|no message found/i.test(describeError(err))) return undefined;
    throw err;
  }
}

/** Creates or updates every JetStream asset of a queue and writes its config record. */
export async function ensureQueueAssets(nc: NatsConnection, target: QueueAssetsTarget, spec: QueueSpec, opts: EnsureOptions = {}): Promise<void> {
  const log = opts.log ?? logger('queues.assets');
  const parsed = queueSpecSchema.parse(spec) as QueueSpec;
  const n = queueNames(target.prefix, target.namespace, parsed.name);
  const jsm = await adminManager(nc);
  await upsertStream(jsm, metaStreamConfig(n, parsed, opts.metaReplicas ?? 3), log);
  const existing = opts.keepExistingConfig === true ? await readQueueConfig(jsm, n) : undefined;
  if (existing === undefined) await writeQueueConfig(nc, target, parsed, opts.by ?? 'operator');
  const servers = await serverNames(jsm, n.metaStream);
  for (const pod of opts.pods ?? hostPods(parsed)) {
    const p = placementFor(pod, servers);
    await upsertStream(jsm, hostStreamConfig(n, parsed, pod, p), log);
  }
}

/** Deletes every stream of the queue (meta and all host streams). */
export async function deleteQueueAssets(nc: NatsConnection, target: QueueAssetsTarget, name: string, opts: { log?: Logger } = {}): Promise<void> {
  const log = opts.log ?? logger('queues.assets');
  const n = queueNames(target.prefix, target.namespace, name);
  const jsm = await adminManager(nc);
  const names: string[] = [];
  for await (const s of jsm.streams.list()) {
    const subjects = s.config.subjects ?? [];
    if (s.config.name === n.metaStream || (s.config.name.startsWith(n.hostStreamPrefix) && subjects.some((x) => x.startsWith(n.hostSubjectPrefix)))) names.push(s.config.name);
  }
  for (const s of names) {
    try {
      await jsm.streams.delete(s);
      log.info('deleted queue stream', { stream: s });
    } catch (err) {
      if (codeOf(err) !== JS_STREAM_NOT_FOUND) throw err;
    }
  }
}
