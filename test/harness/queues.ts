/**
 * Test harness for replicated queues: queue-host sidecars as real processes
 * (role queue-host, configured by the env castellan dev and the operator use)
 * and small HTTP helpers for the queue API.
 */
import { terminate } from '../../common/children.ts';
import { startSidecar, waitHttp, type SidecarProc } from './sidecars.ts';
import type { OutMessage } from '../../sidecar/queues/client.ts';

/** Every process these helpers started, tracked before it is ready, so a failed start leaks nothing. */
const spawned = new Set<SidecarProc>();

/** SIGKILLs every process started here (afterAll). */
export async function killQueueProcs(): Promise<void> {
  await Promise.all([...spawned].map((p) => terminate(p.child, 'SIGKILL', 5_000)));
  spawned.clear();
}

async function startTracked(name: string, natsUrls: string[], env: NodeJS.ProcessEnv, port?: number): Promise<SidecarProc> {
  const p = await startSidecar(name, natsUrls, env, { wait: false, ...(port === undefined ? {} : { port }) });
  spawned.add(p);
  p.child.once('exit', () => spawned.delete(p));
  // Generous: creating R3 streams on a loaded 2-core machine can take long.
  await waitHttp(`${p.url}/readyz`, 120_000);
  return p;
}

/** A client sidecar (no queue of its own). */
export function startQueueClient(name: string, natsUrls: string[], env: NodeJS.ProcessEnv = {}): Promise<SidecarProc> {
  return startTracked(name, natsUrls, { CASTELLAN_ROLE: 'client', ...env });
}

export interface QueueSettings {
  hosts?: number;
  replicaCount?: number;
  visibilityTimeout?: string;
  messageRetention?: string;
  maxMessageBytes?: number;
  delay?: string;
  deadLetterQueue?: string;
  maxReceiveCount?: number;
}

export function queueEnv(queue: string, s: QueueSettings = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { CASTELLAN_ROLE: 'queue-host', CASTELLAN_QUEUE: queue, CASTELLAN_QUEUE_HOSTS: String(s.hosts ?? 3), CASTELLAN_QUEUE_REPLICA_COUNT: String(s.replicaCount ?? 2) };
  if (s.visibilityTimeout !== undefined) env.CASTELLAN_VISIBILITY_TIMEOUT = s.visibilityTimeout;
  if (s.messageRetention !== undefined) env.CASTELLAN_MESSAGE_RETENTION = s.messageRetention;
  if (s.maxMessageBytes !== undefined) env.CASTELLAN_MAX_MESSAGE_BYTES = String(s.maxMessageBytes);
  if (s.delay !== undefined) env.CASTELLAN_QUEUE_DELAY = s.delay;
  if (s.deadLetterQueue !== undefined) env.CASTELLAN_DEAD_LETTER_QUEUE = s.deadLetterQueue;
  if (s.maxReceiveCount !== undefined) env.CASTELLAN_MAX_RECEIVE_COUNT = String(s.maxReceiveCount);
  return env;
}

/** Starts queue host `<queue>-<ordinal>`; waits for /readyz. */
export function startQueueHost(queue: string, ordinal: number, natsUrls: string[], settings: QueueSettings = {}, env: NodeJS.ProcessEnv = {}, opts: { port?: number } = {}): Promise<SidecarProc> {
  return startTracked(`${queue}-${ordinal}`, natsUrls, { ...queueEnv(queue, settings), ...env }, opts.port);
}

export interface HttpResult<T = unknown> {
  status: number;
  body: T;
  text: string;
}

export async function call<T = unknown>(base: string, method: string, path: string, body?: unknown, opts: { raw?: string; timeoutMs?: number } = {}): Promise<HttpResult<T>> {
  const init: RequestInit = { method, signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000) };
  if (opts.raw !== undefined) {
    init.body = opts.raw;
    init.headers = { 'content-type': 'application/json' };
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'content-type': 'application/json' };
  }
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed as T, text };
}

/** A received message as the API returns it. */
export type ApiMessage = OutMessage;

/**
 * Sends `bodies` in batches of 100 (`parallel` batches at a time), sending
 * refused entries again (a busy machine makes a host miss a heartbeat now and
 * then) until all are acknowledged or `timeoutMs` passed; returns body →
 * replicas of every acknowledged one.
 */
export async function sendBacklog(base: string, queue: string, bodies: string[], parallel = 4, timeoutMs = 300_000): Promise<Map<string, string[]>> {
  const acked = new Map<string, string[]>();
  const deadline = performance.now() + timeoutMs;
  let todo = bodies;
  while (todo.length > 0 && performance.now() < deadline) {
    const batches: string[][] = [];
    for (let i = 0; i < todo.length; i += 100) batches.push(todo.slice(i, i + 100));
    let next = 0;
    const worker = async () => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        const r = await call<{ successful: { id: string; replicas: string[] }[] }>(base, 'POST', `/v1/queues/${queue}/batch/send`, {
          entries: batch.map((body, i) => ({ id: `e${i}`, body })),
        }).catch(() => undefined);
        if (r?.status !== 200) continue;
        for (const s of r.body.successful) acked.set(batch[Number(s.id.slice(1))]!, s.replicas);
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    todo = todo.filter((b) => !acked.has(b));
  }
  return acked;
}

/**
 * Receives (10 at a time, `parallel` consumers) and deletes in batches until
 * every body of `want` was seen or `timeoutMs` passed; returns what was seen
 * (body → messages) and every delivery.
 */
export async function drainQueue(
  bases: string[],
  queue: string,
  want: ReadonlySet<string>,
  timeoutMs: number,
  opts: { parallel?: number; remove?: boolean } = {},
): Promise<{ seen: Map<string, ApiMessage>; deliveries: number; unexpected: string[] }> {
  const seen = new Map<string, ApiMessage>();
  const unexpected: string[] = [];
  let deliveries = 0;
  const deadline = performance.now() + timeoutMs;
  // With nothing wanted: receive until the deadline (to show that nothing comes).
  const missing = () => want.size === 0 || [...want].some((b) => !seen.has(b));
  const consumer = async (i: number) => {
    while (performance.now() < deadline && missing()) {
      const base = bases[i % bases.length]!;
      const r = await call<{ messages: ApiMessage[] }>(base, 'POST', `/v1/queues/${queue}/receive`, { maxMessages: 10, waitSeconds: 1 }).catch(() => undefined);
      if (r === undefined || r.status !== 200) {
        await new Promise((res) => setTimeout(res, 100));
        continue;
      }
      deliveries += r.body.messages.length;
      for (const m of r.body.messages) {
        if (!want.has(m.body)) unexpected.push(m.body);
        seen.set(m.body, m);
      }
      if (opts.remove !== false && r.body.messages.length > 0) {
        await call(base, 'POST', `/v1/queues/${queue}/batch/delete`, { entries: r.body.messages.map((m, j) => ({ id: `d${j}`, receiptHandle: m.receiptHandle })) }).catch(() => undefined);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.parallel ?? 4 }, (_, i) => consumer(i)));
  return { seen, deliveries, unexpected };
}

/** Live hosts of a queue as a client sidecar sees them. */
export async function liveQueueHosts(base: string, queue: string): Promise<string[]> {
  const r = await call<{ hosts?: string[] }>(base, 'GET', `/v1/queues/${queue}`).catch(() => undefined);
  return r?.body?.hosts ?? [];
}
