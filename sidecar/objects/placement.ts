/**
 * Placement of new objects: rendezvous (highest-random-weight) hashing over the
 * live hosts of a class. Pure; no I/O.
 *
 * Why rendezvous hashing:
 * - No coordinator. Every caller sidecar that sees the same set of live hosts
 *   computes the same winner for an id, so the first request for a new object
 *   goes straight to the host that will claim it, with no central placement
 *   service to run, fail over or keep consistent.
 * - Minimal movement. Adding or removing one host of N changes the winner only
 *   for the ~1/N of ids whose top score belonged to (or now belongs to) that
 *   host; every other id keeps its winner. Modulo hashing would move almost all.
 * - Placement only proposes. The authority is the ownership record in JetStream
 *   (see lease.ts): an object that already has a live owner stays where it is,
 *   even if the hash now favours another host; views that disagree for a moment
 *   cost one redirect, never a second activation.
 */
import { createHash } from 'node:crypto';

/** 64-bit score of (host, id): the first 8 bytes of SHA-256 over `host \0 id`. */
export function score(host: string, key: string): bigint {
  return createHash('sha256').update(host).update('\0').update(key).digest().readBigUInt64BE(0);
}

/** The host with the highest score for `key`; ties (practically impossible) go to the smaller name. */
export function rendezvous(hosts: Iterable<string>, key: string): string | undefined {
  let best: string | undefined;
  let bestScore = -1n;
  for (const h of hosts) {
    const s = score(h, key);
    if (s > bestScore || (s === bestScore && best !== undefined && h < best)) {
      best = h;
      bestScore = s;
    }
  }
  return best;
}
