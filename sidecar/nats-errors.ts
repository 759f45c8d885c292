/**
 * What NATS and JetStream failures mean to the sidecar, in one place: a
 * compare-and-set that lost (the subject's last sequence moved), a request
 * nobody was subscribed to receive (certainly not delivered), and a read of a
 * subject or sequence that holds no message.
 */
import { JetStreamApiError } from '@nats-io/jetstream';
import { describeError } from '../common/logger.ts';

/** The result of a compare-and-set publish: the new sequence, or CONFLICT. */
export const CONFLICT = 'conflict' as const;
export type CasResult = number | typeof CONFLICT;

const JS_WRONG_LAST_SEQUENCE = 10071;

/** A publish whose expected last (subject) sequence no longer held. */
export function isCasConflict(err: unknown): boolean {
  if (err instanceof JetStreamApiError && err.code === JS_WRONG_LAST_SEQUENCE) return true;
  return /wrong last sequence/i.test(describeError(err));
}

/** A message read (direct or leader get) that found no message: the subject is empty, not unreadable. */
export function isNoMessage(err: unknown): boolean {
  return /no message found|not found|no messages|404/i.test(describeError(err));
}

/** For `.catch` of a message read: undefined when the subject holds no message; anything else is thrown again. */
export function undefinedIfNoMessage(err: unknown): undefined {
  if (isNoMessage(err)) return undefined;
  throw err;
}

/** A request that reached no subscriber (so it was not processed anywhere). */
export function isNoResponders(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e.name === 'NoRespondersError') return true;
    const probe = (e as unknown as { isNoResponders?: () => boolean }).isNoResponders;
    if (typeof probe === 'function' && probe.call(e)) return true;
    if (/no responders/i.test(e.message)) return true;
  }
  return false;
}
