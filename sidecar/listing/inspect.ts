/**
 * Read-only inspection of one object's storage, from the stream (not from
 * the owner, which need not be active), for operators (adapter).
 *
 * Consistency: the stream leader names the object's newest message (its
 * newest key message or its index entry, whichever is later); a replica that
 * holds that message holds every write of the object up to it. The keys are
 * read with one direct multi-last get of `kv.<encId>.*` plus the entry's
 * subject, and accepted only when that replica's newest is at least the
 * leader's: the answer includes every write acknowledged before the read.
 * Objects beyond what one direct get returns (~1024 keys) are read by the
 * journal's paged loader, whose tail comes from the leader.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { describeError } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import type { ClassNames } from '../objects/subjects.ts';
import { FencedError, type Journal } from '../storage/journal.ts';
import type { Entry } from '../storage/key-index.ts';
import { undefinedIfNoMessage } from '../nats-errors.ts';
import { indexNames } from './layout.ts';


export async function readObjectKeys(jsm: JetStreamManager, journal: Journal, names: ClassNames, encId: string): Promise<Map<string, Entry>> {
  const summarySubject = indexNames(names).subject(encId);
  for (let attempt = 0; ; attempt++) {
    const [entryMark, keyMark] = await Promise.all([
      journal.last(names.stream, summarySubject).catch(undefinedIfNoMessage),
      journal.last(names.stream, names.kvAll(encId)).catch(undefinedIfNoMessage),
    ]);
    const need = Math.max(entryMark?.seq ?? 0, keyMark?.seq ?? 0);
    const entries = new Map<string, Entry>();
    let seen = 0;
    try {
      const it = await jsm.direct.getLastMessagesFor(names.stream, { multi_last: [names.kvAll(encId), summarySubject] });
      for await (const m of it) {
        seen = Math.max(seen, m.seq);
        if (m.subject === summarySubject) continue;
        const k = m.header.get('Castellan-Key');
        if (k === '' || m.header.get('Castellan-Op') === 'del') continue;
        entries.set(Buffer.from(k, 'base64url').toString('utf8'), { value: m.data, version: m.seq });
      }
    } catch (err) {
      const text = describeError(err);
      if (/too many results/i.test(text)) return readLarge(journal, names, encId);
      if (!/no messages|not found|404/i.test(text)) throw err;
    }
    if (seen >= need) return entries;
    if (attempt >= 20) throw new Error(`no replica caught up with the object's last write (sequence ${need}, saw ${seen})`);
    await sleep(20 * (attempt + 1));
  }
}

async function readLarge(journal: Journal, names: ClassNames, encId: string): Promise<Map<string, Entry>> {
  for (let attempt = 0; ; attempt++) {
    const owner = await journal.last(names.stream, names.owner(encId)).catch(undefinedIfNoMessage);
    try {
      return (await journal.loadWithValues(names, encId, owner?.seq ?? 0)).entries;
    } catch (err) {
      if (!(err instanceof FencedError) || attempt >= 5) throw err;
    }
  }
}
