/**
 * Writes, pure: the zod schema of `POST …/transaction`, and the planning of a
 * write against the current state — checks evaluated, ops reduced to the
 * messages to commit. Every storage write (PUT, DELETE, delete-all,
 * transaction) is a `Write`; several writes of one object may be planned into
 * one commit (coalescing), each seeing the effects of the ones before it.
 */
import { z } from 'zod';
import { Errors, fromZod } from '../../common/errors.ts';
import { MAX_TX_OPS, validateKey, validateValue } from './keys.ts';

const zKey = z.string();
const zBase64 = z.string().refine((s) => /^[A-Za-z0-9+/_-]*={0,2}$/.test(s) && s.length % 4 !== 1, 'expected base64');

export const transactionSchema = z
  .object({
    checks: z
      .array(
        z.union([
          z.object({ key: zKey, version: z.number().int().min(0) }).strict(),
          z.object({ key: zKey, absent: z.literal(true) }).strict(),
        ]),
      )
      .max(MAX_TX_OPS)
      .default([]),
    ops: z
      .array(
        z.discriminatedUnion('op', [
          z.object({ op: z.literal('put'), key: zKey, value: zBase64 }).strict(),
          z.object({ op: z.literal('delete'), key: zKey }).strict(),
        ]),
      )
      .max(MAX_TX_OPS, `a transaction has at most ${MAX_TX_OPS} ops`),
  })
  .strict();

/** `exists` is internal (PUT with `if-match: *`); transactions accept `version` and `absent`. */
export type Check = { key: string; version: number } | { key: string; absent: true } | { key: string; exists: true };
export type Op = { op: 'put'; key: string; value: Uint8Array } | { op: 'delete'; key: string };

export interface Write {
  checks: Check[];
  ops: Op[];
}

/** Parses and validates a transaction body (400 / 413 with the offending field). */
export function parseTransaction(body: unknown): Write {
  const r = transactionSchema.safeParse(body);
  if (!r.success) {
    if (r.error.issues.some((i) => i.code === 'too_big' && i.path[0] === 'ops')) {
      throw Errors.badRequest(`A transaction has at most ${MAX_TX_OPS} ops.`, 'TOO_MANY_OPS');
    }
    throw fromZod(r.error, 'transaction');
  }
  const checks: Check[] = r.data.checks.map((c) => ({ ...c, key: validateKey(c.key) }));
  const ops: Op[] = r.data.ops.map((o) => {
    const key = validateKey(o.key);
    if (o.op === 'delete') return { op: 'delete', key };
    return { op: 'put', key, value: validateValue(Buffer.from(o.value, 'base64'), key) };
  });
  return { checks, ops };
}

/** What planning sees of a key: its version, or absent. */
export type Lookup = (key: string) => { version: number } | undefined;

/** A key written earlier in the same commit: present (version not known yet) or deleted. */
export type Pending = Map<string, 'put' | 'delete'>;

export type CheckOutcome = { ok: true } | { ok: false; key: string; reason: string };

/**
 * Evaluates checks against the committed state overlaid with writes planned
 * earlier in the same commit. A version check on a key such a write touched
 * fails: its new version did not exist when the caller read.
 */
export function evaluateChecks(checks: readonly Check[], lookup: Lookup, pending: Pending): CheckOutcome {
  for (const c of checks) {
    const p = pending.get(c.key);
    const present = p === undefined ? lookup(c.key) !== undefined : p === 'put';
    if ('absent' in c) {
      if (present) return { ok: false, key: c.key, reason: `key "${c.key}" exists` };
      continue;
    }
    if ('exists' in c) {
      if (!present) return { ok: false, key: c.key, reason: `key "${c.key}" does not exist` };
      continue;
    }
    if (p !== undefined) return { ok: false, key: c.key, reason: `key "${c.key}" changed` };
    const cur = lookup(c.key);
    if (cur === undefined) return { ok: false, key: c.key, reason: `key "${c.key}" does not exist` };
    if (cur.version !== c.version) return { ok: false, key: c.key, reason: `key "${c.key}" is at version ${cur.version}, not ${c.version}` };
  }
  return { ok: true };
}

/** Whether `key` exists in the overlaid state. */
export function presentIn(key: string, lookup: Lookup, pending: Pending): boolean {
  const p = pending.get(key);
  return p === undefined ? lookup(key) !== undefined : p === 'put';
}

/**
 * Reduces ops to one final op per key (later ops of a transaction win), in
 * first-touch order, and records them in `pending`.
 */
export function reduceOps(ops: readonly Op[], pending: Pending): Op[] {
  const last = new Map<string, Op>();
  for (const o of ops) {
    last.delete(o.key);
    last.set(o.key, o);
  }
  const out = [...last.values()];
  for (const o of out) pending.set(o.key, o.op);
  return out;
}
