/**
 * Receipt handles: opaque to the app, they say where a received message lives
 * (the holder host, every replica host), which receive it belongs to (receive
 * count) and when it was enqueued. Encoded as base64url(JSON) + "." +
 * base64url(HMAC-SHA256 truncated to 128 bits) keyed per queue, so a garbled,
 * truncated or hand-edited handle (or one of another queue) is a clean 400.
 * It is an integrity check, not authentication: every app on the pod may use
 * the queue anyway.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Errors } from '../../common/errors.ts';
import { messageIdPattern } from './names.ts';

export interface Receipt {
  /** Queue name. */
  q: string;
  /** Host that held the visible copy when it was received. */
  h: string;
  /** Message id. */
  id: string;
  /** Replica hosts. */
  r: string[];
  /** Receive count of this receive. */
  c: number;
  /** Enqueue time (wall ms). */
  t: number;
}

const MAX_HANDLE_CHARS = 4096;

function mac(body: string, key: string): Buffer {
  return createHmac('sha256', key).update(body).digest().subarray(0, 16);
}

export function receiptKey(namespace: string, queue: string): string {
  return `castellan-receipt/v1/${namespace}/${queue}`;
}

export function encodeReceipt(r: Receipt, key: string): string {
  const body = Buffer.from(JSON.stringify(r), 'utf8').toString('base64url');
  return `${body}.${mac(body, key).toString('base64url')}`;
}

const invalid = (why: string) => Errors.badRequest(`Invalid receipt handle: ${why}.`, 'INVALID_RECEIPT_HANDLE');

export function decodeReceipt(handle: string, key: string, queue: string): Receipt {
  if (typeof handle !== 'string' || handle.length === 0) throw invalid('it is empty');
  if (handle.length > MAX_HANDLE_CHARS) throw invalid('it is too long');
  const dot = handle.indexOf('.');
  if (dot <= 0 || dot !== handle.lastIndexOf('.')) throw invalid('it is not a handle this queue issued');
  const body = handle.slice(0, dot);
  const sig = handle.slice(dot + 1);
  if (!/^[A-Za-z0-9_-]+$/.test(body) || !/^[A-Za-z0-9_-]{22}$/.test(sig)) throw invalid('it is not a handle this queue issued');
  const want = mac(body, key);
  const got = Buffer.from(sig, 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw invalid('it was not issued by this queue or was altered');
  let r: unknown;
  try {
    r = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    throw invalid('it is not a handle this queue issued');
  }
  const o = r as Partial<Receipt>;
  if (
    typeof o !== 'object' ||
    o === null ||
    o.q !== queue ||
    typeof o.h !== 'string' ||
    typeof o.id !== 'string' ||
    !messageIdPattern.test(o.id) ||
    !Array.isArray(o.r) ||
    !o.r.every((x) => typeof x === 'string') ||
    typeof o.c !== 'number' ||
    typeof o.t !== 'number'
  ) {
    throw invalid('it belongs to another queue or is malformed');
  }
  return o as Receipt;
}
