/**
 * Replicated queues, pure logic: receipt handles (round trip, garbage,
 * tampering, wrong queue), visibility, promotion decisions, dead-lettering,
 * the dedup window, target choice, batch and request validation, names.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { CastellanError } from '../../common/errors.ts';
import { loadSidecarConfig } from '../../sidecar/config.ts';
import { batchSendSchema, receiveSchema, sendSchema, visibilitySchema } from '../../sidecar/queues/api.ts';
import { messageSize, receiveOrder } from '../../sidecar/queues/client.ts';
import {
  batchProblem,
  dedupDecision,
  DEDUP_PENDING_STALE_MS,
  encodedSize,
  expired,
  fitReply,
  nextVisibleAt,
  pickTargets,
  shareOut,
  shouldDeadLetter,
  visibilityOf,
} from '../../sidecar/queues/logic.ts';
import { TakeoverLog } from '../../sidecar/queues/takeover.ts';
import { isValidQueueName, queueNames } from '../../sidecar/queues/names.ts';
import { decodeReceipt, encodeReceipt, receiptKey, type Receipt } from '../../sidecar/queues/receipt.ts';
import { LIMITS, queueSpecSchema } from '../../sidecar/queues/spec.ts';

const key = receiptKey('default', 'jobs');
const receipt: Receipt = { q: 'jobs', h: 'jobs-1', id: '0b6b1c56-3d0f-4a56-9d4e-2f8a7f1b9e01', r: ['jobs-1', 'jobs-2'], c: 3, t: 1_700_000_000_000 };

function code(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    return err instanceof CastellanError ? `${err.status} ${err.code}` : String(err);
  }
}

describe('receipt handles', () => {
  it('round-trip every field', () => {
    const h = encodeReceipt(receipt, key);
    expect(h).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expect(decodeReceipt(h, key, 'jobs')).toEqual(receipt);
  });

  it('reject garbage, tampering and other queues with 400 INVALID_RECEIPT_HANDLE', () => {
    const h = encodeReceipt(receipt, key);
    const [body, sig] = h.split('.') as [string, string];
    const forged = Buffer.from(JSON.stringify({ ...receipt, c: 1 })).toString('base64url');
    for (const bad of ['', 'garbage', 'a.b', `${body}.${sig}x`, `${body}x.${sig}`, `${forged}.${sig}`, `${body}.${sig}.x`, '.'.repeat(5), 'x'.repeat(5000), `${body}`]) {
      expect(code(() => decodeReceipt(bad, key, 'jobs'))).toBe('400 INVALID_RECEIPT_HANDLE');
    }
    expect(code(() => decodeReceipt(h, receiptKey('default', 'other'), 'other'))).toBe('400 INVALID_RECEIPT_HANDLE');
    expect(code(() => decodeReceipt(h, key, 'other'))).toBe('400 INVALID_RECEIPT_HANDLE');
    const wrongShape = Buffer.from(JSON.stringify({ q: 'jobs', id: 'not-a-uuid' })).toString('base64url');
    const sig2 = createHmac('sha256', key).update(wrongShape).digest().subarray(0, 16).toString('base64url');
    expect(code(() => decodeReceipt(`${wrongShape}.${sig2}`, key, 'jobs'))).toBe('400 INVALID_RECEIPT_HANDLE');
  });
});

describe('visibility', () => {
  it('is delayed, then visible, then in flight, then visible again', () => {
    const m = { visibleAt: 1_000, invisibleUntil: 0 };
    expect(visibilityOf(m, 999)).toBe('delayed');
    expect(visibilityOf(m, 1_000)).toBe('visible');
    expect(visibilityOf({ ...m, invisibleUntil: 5_000 }, 4_999)).toBe('inflight');
    expect(visibilityOf({ ...m, invisibleUntil: 5_000 }, 5_000)).toBe('visible');
    expect(nextVisibleAt({ ...m, invisibleUntil: 5_000 }, 2_000)).toBe(5_000);
    expect(nextVisibleAt(m, 2_000)).toBeUndefined();
  });

  it('expires after the retention', () => {
    expect(expired({ enqueuedAt: 0 }, 1_000, 999)).toBe(false);
    expect(expired({ enqueuedAt: 0 }, 1_000, 1_000)).toBe(true);
  });

  it('dead-letters after maxReceiveCount receives, only with a DLQ', () => {
    const dl = { queue: 'dlq', maxReceiveCount: 3 };
    expect(shouldDeadLetter({ receiveCount: 2 }, dl)).toBe(false);
    expect(shouldDeadLetter({ receiveCount: 3 }, dl)).toBe(true);
    expect(shouldDeadLetter({ receiveCount: 99 }, undefined)).toBe(false);
  });
});

describe('takeover log (who holds a message)', () => {
  const alive = (o: Record<string, string>) => o;
  const msg = { primary: 'q-0', ps: 'a0', replicas: ['q-0', 'q-1', 'q-2'] };
  const holder = (log: TakeoverLog, m = msg) => log.holder(m.primary, m.ps, m.replicas);

  it('the primary session holds until its death record; then the next live replica after it', () => {
    const log = new TakeoverLog();
    expect(holder(log)).toEqual({ pod: 'q-0', session: 'a0' });
    log.add(1, { kind: 'death', pod: 'q-0', session: 'a0', alive: alive({ 'q-1': 'b0', 'q-2': 'c0' }), ts: 0 });
    expect(holder(log)).toEqual({ pod: 'q-1', session: 'b0' });
    // A message whose primary is another host is not affected.
    expect(holder(log, { primary: 'q-2', ps: 'c0', replicas: ['q-2', 'q-0'] })).toEqual({ pod: 'q-2', session: 'c0' });
  });

  it('a second failure moves it on, also back to the restarted first host (new session)', () => {
    const log = new TakeoverLog();
    log.add(1, { kind: 'death', pod: 'q-0', session: 'a0', alive: alive({ 'q-1': 'b0', 'q-2': 'c0' }), ts: 0 });
    log.add(2, { kind: 'birth', pod: 'q-0', session: 'a1', alive: alive({ 'q-0': 'a1', 'q-1': 'b0', 'q-2': 'c0' }), ts: 0 });
    log.add(3, { kind: 'death', pod: 'q-1', session: 'b0', alive: alive({ 'q-0': 'a1', 'q-2': 'c0' }), ts: 0 });
    expect(holder(log)).toEqual({ pod: 'q-2', session: 'c0' });
    expect(holder(log, { primary: 'q-0', ps: 'a0', replicas: ['q-0', 'q-1'] })).toEqual({ pod: 'q-0', session: 'a1' });
  });

  it('a message whose every replica was down is adopted by the first replica born again', () => {
    const log = new TakeoverLog();
    const m = { primary: 'q-0', ps: 'a0', replicas: ['q-0', 'q-1'] };
    log.add(1, { kind: 'death', pod: 'q-1', session: 'b0', alive: alive({ 'q-0': 'a0', 'q-2': 'c0' }), ts: 0 });
    log.add(2, { kind: 'death', pod: 'q-0', session: 'a0', alive: alive({ 'q-2': 'c0' }), ts: 0 });
    expect(holder(log, m)).toBeUndefined();
    log.add(3, { kind: 'birth', pod: 'q-1', session: 'b1', alive: alive({ 'q-1': 'b1', 'q-2': 'c0' }), ts: 0 });
    expect(holder(log, m)).toEqual({ pod: 'q-1', session: 'b1' });
  });

  it('never loops on records written from stale views; duplicates are ignored', () => {
    const log = new TakeoverLog();
    const m = { primary: 'q-0', ps: 'a0', replicas: ['q-0', 'q-1'] };
    log.add(1, { kind: 'death', pod: 'q-1', session: 'b0', alive: alive({ 'q-0': 'a0' }), ts: 0 });
    // Written by a host that still thought b0 alive: b0 died before (position 0), so it is skipped.
    log.add(2, { kind: 'death', pod: 'q-0', session: 'a0', alive: alive({ 'q-1': 'b0' }), ts: 0 });
    expect(holder(log, m)).toBeUndefined();
    expect(log.add(3, { kind: 'death', pod: 'q-0', session: 'a0', alive: alive({}), ts: 0 })).toBe(false);
    log.add(4, { kind: 'birth', pod: 'q-0', session: 'a1', alive: alive({ 'q-0': 'a1' }), ts: 0 });
    expect(holder(log, m)).toEqual({ pod: 'q-0', session: 'a1' });
    expect(log.recordsOf('q-0').sort()).toEqual(['a0', 'a1']);
  });
});

describe('reply bounds and receive shares', () => {
  it('fits messages into a reply by bytes, never more than max', () => {
    expect(fitReply([100, 100, 100], 10_000, 10)).toBe(3);
    expect(fitReply([100, 100, 100], 10_000, 2)).toBe(2);
    expect(fitReply([4_000, 4_000, 4_000], 12_000, 10)).toBe(2);
    expect(fitReply([20_000], 10_000, 10)).toBe(0);
  });

  it('counts JSON escaping in the wire size', () => {
    expect(encodedSize('ab', {})).toBe(4 + 2);
    expect(encodedSize('\u0001', {})).toBe(8 + 2);
  });

  it('shares maxMessages over hosts so that the shares add up to it exactly', () => {
    expect(shareOut(['a', 'b', 'c'], 10)).toEqual([
      { pod: 'a', max: 4 },
      { pod: 'b', max: 3 },
      { pod: 'c', max: 3 },
    ]);
    expect(shareOut(['a', 'b', 'c'], 1)).toEqual([{ pod: 'a', max: 1 }]);
    expect(shareOut([], 5)).toEqual([]);
  });
});

describe('deduplication window', () => {
  const now = 10_000_000;
  it('answers with the first send inside the window, and forgets after it', () => {
    expect(dedupDecision(undefined, now)).toEqual({ action: 'new' });
    const done = { state: 'done' as const, ts: now - 1_000, messageId: 'm', replicas: ['a', 'b'] };
    expect(dedupDecision(done, now)).toEqual({ action: 'duplicate', messageId: 'm', replicas: ['a', 'b'] });
    expect(dedupDecision({ ...done, ts: now - LIMITS.dedupWindowMs + 1 }, now).action).toBe('duplicate');
    expect(dedupDecision({ ...done, ts: now - LIMITS.dedupWindowMs }, now)).toEqual({ action: 'new' });
  });

  it('waits for a send in progress, unless it was abandoned', () => {
    expect(dedupDecision({ state: 'pending', ts: now - 100 }, now)).toEqual({ action: 'wait' });
    expect(dedupDecision({ state: 'pending', ts: now - DEDUP_PENDING_STALE_MS }, now)).toEqual({ action: 'new' });
  });
});

describe('target choice', () => {
  it('picks distinct hosts, rotating, skipping excluded ones', () => {
    const live = ['a', 'b', 'c'];
    expect(pickTargets(live, new Set(), 2, 0)).toEqual(['a', 'b']);
    expect(pickTargets(live, new Set(), 2, 2)).toEqual(['c', 'a']);
    expect(pickTargets(live, new Set(['a']), 2, 0)).toEqual(['b', 'c']);
    expect(pickTargets(live, new Set(['a', 'b', 'c']), 1, 5)).toEqual([]);
    expect(pickTargets(live, new Set(), 5, -1)).toEqual(['c', 'a', 'b']);
    expect(pickTargets([], new Set(), 1, 0)).toEqual([]);
  });
});

describe('receive order', () => {
  it('asks hinted hosts first (newest hint first), then the others rotated', () => {
    expect(receiveOrder(['a', 'b', 'c'], new Map(), 1)).toEqual(['b', 'c', 'a']);
    expect(receiveOrder(['a', 'b', 'c'], new Map([['c', 5], ['a', 9]]), 0)).toEqual(['a', 'c', 'b']);
    expect(receiveOrder(['a', 'b'], new Map([['gone', 1]]), 0)).toEqual(['a', 'b']);
    expect(receiveOrder([], new Map(), 3)).toEqual([]);
  });
});

describe('request validation', () => {
  it('validates batches: size, ids, duplicates', () => {
    expect(batchProblem([])).toMatch(/empty/);
    expect(batchProblem(Array.from({ length: 101 }, (_, i) => ({ id: `e${i}` })))).toMatch(/101/);
    expect(batchProblem(Array.from({ length: 100 }, (_, i) => ({ id: `e${i}` })))).toBeUndefined();
    expect(batchProblem([{ id: 'a' }, { id: 'a' }])).toMatch(/twice/);
    expect(batchProblem([{ id: 'has space' }])).toMatch(/entries\.0\.id/);
    expect(batchSendSchema.safeParse({ entries: [{ id: 'a', body: 'x' }] }).success).toBe(true);
    expect(batchSendSchema.safeParse({ entries: [{ id: 'a', body: 1 }] }).success).toBe(false);
    expect(batchSendSchema.safeParse({}).success).toBe(false);
  });

  it('validates send, receive and visibility bodies', () => {
    expect(sendSchema.safeParse({ body: 'x', replicas: 2, delaySeconds: 900, deduplicationId: 'd', attributes: { k: 'v' } }).success).toBe(true);
    for (const bad of [{}, { body: 1 }, { body: 'x', replicas: 6 }, { body: 'x', delaySeconds: 901 }, { body: 'x', attributes: { k: 1 } }, { body: 'x', deduplicationId: '' }]) {
      expect(sendSchema.safeParse(bad).success).toBe(false);
    }
    expect(receiveSchema.parse({})).toEqual({ maxMessages: 1, waitSeconds: 0 });
    for (const bad of [{ maxMessages: 0 }, { maxMessages: 11 }, { waitSeconds: 21 }, { visibilityTimeoutSeconds: -1 }, { maxMessages: 1.5 }]) {
      expect(receiveSchema.safeParse(bad).success).toBe(false);
    }
    expect(visibilitySchema.safeParse({ receiptHandle: 'h', visibilityTimeoutSeconds: 0 }).success).toBe(true);
    expect(visibilitySchema.safeParse({ receiptHandle: 'h' }).success).toBe(false);
  });

  it('counts body and attributes against the size limit', () => {
    expect(messageSize('héllo', { k: 'vv' })).toBe(6 + 1 + 2);
  });

  it('validates queue specs and names', () => {
    const spec = { name: 'jobs', hosts: 3, replicaCount: 2, visibilityTimeoutMs: 30_000, messageRetentionMs: 86_400_000, maxMessageBytes: 262_144, delayMs: 0 };
    expect(queueSpecSchema.safeParse(spec).success).toBe(true);
    expect(queueSpecSchema.safeParse({ ...spec, replicaCount: 4 }).success).toBe(false);
    expect(queueSpecSchema.safeParse({ ...spec, delayMs: 15 * 60_000 + 1 }).success).toBe(false);
    expect(isValidQueueName('jobs-1.a')).toBe(true);
    expect(isValidQueueName('Jobs')).toBe(false);
    const n = queueNames('castellan', 'default', 'jobs.x');
    expect(n.metaStream).toBe('CASTELLAN_QM_default_jobs_x');
    expect(n.hostStream('jobs.x-0')).toBe('CASTELLAN_QH_default_jobs_x_jobs_x-0');
    expect(n.dedup('a.b c>')).toMatch(/^castellan\.q\.default\.jobs_x\.meta\.dedup\.[A-Za-z0-9_-]{32}$/);
  });
});

describe('queue-host configuration (env)', () => {
  const base = { CASTELLAN_NATS_URL: 'nats://127.0.0.1:4222', CASTELLAN_ROLE: 'queue-host' };
  it('reads every queue env name', () => {
    const c = loadSidecarConfig({}, {
      ...base,
      CASTELLAN_QUEUE: 'jobs',
      CASTELLAN_QUEUE_HOSTS: '3',
      CASTELLAN_QUEUE_REPLICA_COUNT: '3',
      CASTELLAN_VISIBILITY_TIMEOUT: '45s',
      CASTELLAN_MESSAGE_RETENTION: '1d',
      CASTELLAN_MAX_MESSAGE_BYTES: '1048576',
      CASTELLAN_QUEUE_DELAY: '15m',
      CASTELLAN_DEAD_LETTER_QUEUE: 'jobs-dlq',
      CASTELLAN_MAX_RECEIVE_COUNT: '5',
    });
    expect(c.queues).toEqual({ queue: 'jobs', hosts: 3, replicaCount: 3, visibilityTimeout: 45_000, messageRetention: 86_400_000, maxMessageBytes: 1_048_576, delay: 900_000, deadLetterQueue: 'jobs-dlq', maxReceiveCount: 5 });
  });

  it('rejects missing or out-of-range settings, naming the env variable', () => {
    expect(() => loadSidecarConfig({}, base)).toThrow(/queues\.queue.*CASTELLAN_QUEUE/);
    expect(() => loadSidecarConfig({}, { ...base, CASTELLAN_QUEUE: 'jobs', CASTELLAN_QUEUE_HOSTS: '1' })).toThrow(/replicaCount/);
    expect(() => loadSidecarConfig({}, { ...base, CASTELLAN_QUEUE: 'jobs', CASTELLAN_QUEUE_DELAY: '16m' })).toThrow(/CASTELLAN_QUEUE_DELAY/);
    expect(() => loadSidecarConfig({}, { ...base, CASTELLAN_QUEUE: 'jobs', CASTELLAN_MESSAGE_RETENTION: '15d' })).toThrow(/CASTELLAN_MESSAGE_RETENTION/);
    expect(() => loadSidecarConfig({}, { ...base, CASTELLAN_QUEUE: 'jobs', CASTELLAN_MAX_MESSAGE_BYTES: '2000000' })).toThrow(/CASTELLAN_MAX_MESSAGE_BYTES/);
    expect(() => loadSidecarConfig({}, { ...base, CASTELLAN_QUEUE: 'jobs', CASTELLAN_DEAD_LETTER_QUEUE: 'dlq' })).toThrow(/maxReceiveCount/);
    expect(loadSidecarConfig({}, { CASTELLAN_NATS_URL: 'nats://127.0.0.1:4222' }).queues.queue).toBeUndefined();
  });
});
