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
