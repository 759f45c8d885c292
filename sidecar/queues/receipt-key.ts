/**
 * The secret that signs a queue's receipt handles (receipt.ts): 32 random
 * bytes, made once per queue by whichever sidecar needs it first and kept in
 * the queue's meta stream at `<base>.meta.receiptkey` (the stream keeps one
 * message per subject and has no max age, so the key lives as long as the
 * queue). The first writer wins by compare-and-set (expected last subject
 * sequence 0); a loser reads the winner's key, so every sidecar signs with
 * the same key. Only connections of the queue's namespace can read it: with
 * the auth callout (docs/security.md) each namespace is its own NATS account.
 * An app never sees it, so it cannot forge a handle.
 */
import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { isCasConflict } from '../nats-errors.ts';
import type { QueueNames } from './names.ts';

export function receiptKeySubject(n: QueueNames): string {
  return n.metaAll.replace(/>$/, 'receiptkey');
}

export async function loadReceiptKey(nc: NatsConnection, n: QueueNames, timeoutMs = 10_000): Promise<string> {
  const subject = receiptKeySubject(n);
  const jsm = await jetstreamManager(nc, { timeout: timeoutMs, checkAPI: false });
  for (let attempt = 0; attempt < 5; attempt++) {
    const stored = await jsm.direct.getMessage(n.metaStream, { last_by_subj: subject });
    if (stored !== null && stored.data.length > 0) return stored.string();
    const key = randomBytes(32).toString('base64url');
    try {
      await jetstream(nc, { timeout: timeoutMs }).publish(subject, key, { expect: { lastSubjectSequence: 0 } });
      return key;
    } catch (err) {
      if (!isCasConflict(err)) throw err;
    }
  }
  throw new Error(`could not agree on the receipt key of ${n.metaStream}`);
}
