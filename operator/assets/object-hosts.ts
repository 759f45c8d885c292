/**
 * What an object class's hosts report about themselves, read by the operator
 * from their host records (the last record on each host subject of the class
 * stream, written by every heartbeat): objects stuck past turnTimeout become
 * Warning Events on the DurableObject (issue: a stuck object is reported
 * through the operator, not only in the pod's logs, metrics and readiness).
 *
 * `stuckWarnings` is pure: one warning per stuck object, from hosts whose
 * record is current (alive or draining, written within `maxAgeMs` of `now`;
 * a dead host's last record says nothing about now). The message names the
 * object and the request, not how long it has run, so the recorder's
 * de-duplication keeps it to one Event per stuck request per ten minutes.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import type { Problem } from '../desired/status.ts';
import type { HostRecord } from '../../sidecar/objects/lease.ts';
import { classNames } from '../../sidecar/objects/subjects.ts';
import type { ObjectClassTarget } from './object-assets.ts';

export function stuckWarnings(cls: string, records: readonly HostRecord[], now: number, maxAgeMs: number): Problem[] {
  const out: Problem[] = [];
  for (const r of records) {
    if ((r.kind !== 'alive' && r.kind !== 'draining') || r.stuck === undefined || now - r.ts > maxAgeMs) continue;
    for (const o of r.stuck.objects) {
      out.push({
        reason: 'ObjectStuck',
        message: `object ${cls}/${o.id} on pod ${r.pod} is stuck: request ${o.rid} has run in the app past turnTimeout; its callers get 503 OBJECT_STUCK until the app answers it`,
      });
    }
    const unnamed = r.stuck.count - r.stuck.objects.length;
    if (unnamed > 0) out.push({ reason: 'ObjectStuck', message: `pod ${r.pod} has ${r.stuck.count} objects of ${cls} stuck past turnTimeout (${unnamed} not named here; see its /readyz)` });
  }
  return out;
}

/** The last record of every host of the class (direct get, one request). */
export async function readHostRecords(nc: NatsConnection, t: ObjectClassTarget, log: Logger): Promise<HostRecord[]> {
  const names = classNames(t.prefix, t.namespace, t.cls);
  const out: HostRecord[] = [];
  try {
    const jsm = await jetstreamManager(nc, { timeout: 10_000, checkAPI: false });
    const it = await jsm.direct.getLastMessagesFor(names.stream, { multi_last: [names.hosts] });
    for await (const m of it) out.push(m.json<HostRecord>());
  } catch (err) {
    log.debug('reading host records failed', { cls: t.cls, error: describeError(err) });
  }
  return out;
}
