/**
 * SQS clients through a queue-host crash: the real @aws-sdk/client-sqs sends
 * thousands of messages in batches into a queue of 3 hosts (R=2) on a 3-node
 * NATS under `castellan dev`, while consumers receive and delete; one queue
 * host is killed with -9 in the middle. Every message the SDK saw
 * acknowledged (in a batch's Successful list) is received afterwards: none
 * is lost.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { freePort, waitFor } from '../../common/net.ts';
import { startDev, type DevRun } from './dev-harness.ts';

const TOTAL = 3_000;

describe('SQS API: kill -9 of a queue host under SDK load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-sqs-failover-'));
  let dev: DevRun;
  let sqs: SQSClient;
  let QueueUrl: string;

  beforeAll(async () => {
    const port = await freePort();
    writeFileSync(
      join(dir, 'dev.yaml'),
      ['nats: {embedded: {servers: 3}}', 'queues:', '  load: {hosts: 3, replicaCount: 2, visibilityTimeout: 10s}', `client: {port: ${port}}`, ''].join('\n'),
    );
    dev = startDev(['-f', join(dir, 'dev.yaml')], join(dir, 'state'));
    await dev.ready(240_000);
    QueueUrl = `http://127.0.0.1:${port}/sqs/default/load`;
    sqs = new SQSClient({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', credentials: { accessKeyId: 'castellan', secretAccessKey: 'unchecked' }, maxAttempts: 5 });
  }, 300_000);

  afterAll(async () => {
    sqs?.destroy();
    if (dev !== undefined) await dev.stop();
  }, 60_000);

  it('loses no acknowledged message', async () => {
    const acked = new Set<string>();
    const received = new Set<string>();
    let sent = 0;
    let killed = false;
    let stopConsumers = false;
    const victim = dev.state().processes.find((p) => p.name === 'load-1');
    expect(victim).toBeDefined();

    const producer = async (w: number) => {
      for (let b = w; b * 10 < TOTAL; b += 4) {
        const entries = Array.from({ length: 10 }, (_, i) => ({ Id: `m${i}`, MessageBody: `msg-${b * 10 + i}` }));
        try {
          const r = await sqs.send(new SendMessageBatchCommand({ QueueUrl, Entries: entries }));
          for (const s of r.Successful ?? []) acked.add(`msg-${b * 10 + Number(s.Id?.slice(1))}`);
        } catch {
          // Not acknowledged: not counted (the SDK already retried).
        }
        sent += 10;
        if (!killed && sent >= TOTAL / 3) {
          killed = true;
          process.kill(victim?.pid as number, 'SIGKILL');
        }
      }
    };
    const consumer = async () => {
      while (!stopConsumers) {
        try {
          const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
          const ms = r.Messages ?? [];
          for (const m of ms) received.add(m.Body as string);
          if (ms.length > 0) await sqs.send(new DeleteMessageBatchCommand({ QueueUrl, Entries: ms.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })) }));
        } catch {
          // A receive or delete during the failover; undeleted messages come back after their visibility timeout.
        }
      }
    };
    const consumers = Array.from({ length: 3 }, () => consumer());
    await Promise.all([0, 1, 2, 3].map((w) => producer(w)));
    expect(killed).toBe(true);
    expect(acked.size).toBeGreaterThan(TOTAL * 0.9);
    await waitFor(
      'every acknowledged message to be received',
      async () => ([...acked].every((b) => received.has(b)) ? true : undefined),
      { timeoutMs: 180_000, intervalMs: 1_000 },
    ).catch((err: unknown) => {
      const missing = [...acked].filter((b) => !received.has(b));
      throw new Error(`${String(err)}: ${missing.length} of ${acked.size} acknowledged messages never received (e.g. ${missing.slice(0, 5).join(', ')})`);
    });
    stopConsumers = true;
    await Promise.all(consumers);
  }, 400_000);
});
