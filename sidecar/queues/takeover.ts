/**
 * Who holds a message's visible copy, decided from one small log of host
 * events instead of one claim record per message (pure: no I/O, no clock).
 *
 * Every replica of a message names the same replica list and the session of
 * its primary at enqueue (`ps`). The holder starts as (primary, ps). The log
 * (`<base>.meta.to.<pod>.<session>.<kind>` in the meta stream, one record per
 * subject, written by compare-and-set on an empty subject so each exists at
 * most once) holds:
 * - death(pod, session): the session is certainly dead (fenced, left, or
 *   replaced by a restart of the pod) and `alive` lists the sessions that
 *   were live when it was written;
 * - birth(pod, session): a session that starts serving, with the same list.
 *
 * holder(m): while the current holder (p, s) has a death record D at log
 * position i, the next holder is the first replica of m after p (cyclically,
 * p itself last) that is alive in D, or, when none is, in the first later
 * record whose alive list has one (a birth of a returning replica adopts
 * messages whose every replica was down). A candidate whose own death record
 * comes at or before position i is skipped, so positions strictly increase:
 * the walk ends, and every host that has read the log up to the same point
 * computes the same holder. Taking over a failed host with any number of
 * messages costs one record; a host whose log lags only serves later.
 */

export type TakeoverKind = 'death' | 'birth';

export interface TakeoverRecord {
  kind: TakeoverKind;
  pod: string;
  session: string;
  /** Sessions live when it was written (pod → session); never the dead one. */
  alive: Record<string, string>;
  /** Wall ms at the writer, informational. */
  ts: number;
}

export interface Holder {
  pod: string;
  session: string;
}

const key = (pod: string, session: string) => `${pod}\u0000${session}`;

export class TakeoverLog {
  private readonly records: TakeoverRecord[] = [];
  private readonly deaths = new Map<string, number>();
  private readonly seen = new Set<string>();
  /** Highest stream sequence added (read on from here). */
  lastSeq = 0;
  /** Changes whenever a record is added (callers cache holders per version). */
  version = 0;

  /** Adds a record read at stream sequence `seq` (in increasing order); duplicates are ignored. */
  add(seq: number, r: TakeoverRecord): boolean {
    if (seq > this.lastSeq) this.lastSeq = seq;
    const k = `${r.kind}\u0000${key(r.pod, r.session)}`;
    if (this.seen.has(k)) return false;
    this.seen.add(k);
    this.records.push(r);
    if (r.kind === 'death') this.deaths.set(key(r.pod, r.session), this.records.length - 1);
    this.version++;
    return true;
  }

  isDead(pod: string, session: string): boolean {
    return this.deaths.has(key(pod, session));
  }

  isBorn(pod: string, session: string): boolean {
    return this.seen.has(`birth\u0000${key(pod, session)}`);
  }

  /** Every session of `pod` the log names (as subject or as alive). */
  recordsOf(pod: string): string[] {
    const out = new Set<string>();
    for (const r of this.records) {
      if (r.pod === pod) out.add(r.session);
      const a = r.alive[pod];
      if (a !== undefined) out.add(a);
    }
    return [...out];
  }

  get size(): number {
    return this.records.length;
  }

  /** The holder of a message (see the header), or undefined while every replica has been down since. */
  holder(primary: string, ps: string, replicas: readonly string[]): Holder | undefined {
    let cur: Holder = { pod: primary, session: ps };
    let at = this.deaths.get(key(primary, ps));
    while (at !== undefined) {
      let next: Holder | undefined;
      for (let i = at; i < this.records.length && next === undefined; i++) next = this.successor((this.records[i] as TakeoverRecord).alive, replicas, cur.pod, at);
      if (next === undefined) return undefined;
      cur = next;
      at = this.deaths.get(key(cur.pod, cur.session));
    }
    return cur;
  }

  private successor(alive: Record<string, string>, replicas: readonly string[], after: string, at: number): Holder | undefined {
    const n = replicas.length;
    const start = replicas.indexOf(after);
    for (let j = 1; j <= n; j++) {
      const pod = start < 0 ? replicas[j - 1] : replicas[(start + j) % n];
      if (pod === undefined) continue;
      const session = alive[pod];
      if (session === undefined) continue;
      const d = this.deaths.get(key(pod, session));
      if (d !== undefined && d <= at) continue;
      return { pod, session };
    }
    return undefined;
  }
}
