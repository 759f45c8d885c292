/**
 * The query of `GET /v1/classes/{class}/objects?prefix=&after=&limit=` and of
 * the inspection listing, and the opaque cursor, pure.
 *
 * A cursor is the base64url (no padding) of the UTF-8 bytes of the last id
 * returned: it names a position in the (byte-ordered) id space, not in any
 * server's memory, so it stays valid across sidecars, restarts and changes to
 * the class (objects created or deleted meanwhile are simply included or not).
 */
import { z } from 'zod';
import { Errors, formatZodIssues } from '../../common/errors.ts';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

export interface PageQuery {
  prefix: string;
  /** Exclusive lower bound (decoded from the cursor). */
  after?: string;
  limit: number;
}

export function encodeCursor(last: string): string {
  return Buffer.from(last, 'utf8').toString('base64url');
}

/** Decodes a cursor; 400 INVALID_CURSOR when it is not one this API produced. */
export function decodeCursor(cursor: string, maxBytes: number): string {
  const bad = (why: string) => Errors.badRequest(`Invalid cursor "${cursor.slice(0, 64)}": ${why}; pass back the "next" value of the previous page.`, 'INVALID_CURSOR');
  if (!/^[A-Za-z0-9_-]+$/.test(cursor) || cursor.length % 4 === 1) throw bad('not base64url');
  const bytes = Buffer.from(cursor, 'base64url');
  if (bytes.length === 0 || bytes.length > maxBytes) throw bad('out of range');
  if (bytes.toString('base64url') !== cursor) throw bad('not canonical base64url');
  const s = bytes.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(bytes)) throw bad('not UTF-8');
  return s;
}

const querySchema = z
  .object({
    prefix: z.string().max(4096).default(''),
    after: z.string().max(8192).optional(),
    limit: z
      .string()
      .regex(/^\d{1,7}$/, 'expected an integer')
      .transform(Number)
      .pipe(z.number().int().min(1, `must be 1–${MAX_LIMIT}`).max(MAX_LIMIT, `must be 1–${MAX_LIMIT}`))
      .optional(),
  })
  .strict();

/** Parses a page query; 400 INVALID_LIMIT / INVALID_CURSOR / BAD_REQUEST naming the parameter. */
export function parsePageQuery(query: URLSearchParams, maxCursorBytes: number): PageQuery {
  const obj: Record<string, string> = {};
  for (const [k, v] of query) {
    if (k in obj) throw Errors.badRequest(`Query parameter "${k}" is given more than once.`);
    obj[k] = v;
  }
  const r = querySchema.safeParse(obj);
  if (!r.success) {
    const code = r.error.issues.some((i) => i.path[0] === 'limit') ? 'INVALID_LIMIT' : 'BAD_REQUEST';
    throw Errors.badRequest(`Invalid list query: ${formatZodIssues(r.error)}`, code);
  }
  const out: PageQuery = { prefix: r.data.prefix, limit: r.data.limit ?? DEFAULT_LIMIT };
  if (r.data.after !== undefined && r.data.after !== '') out.after = decodeCursor(r.data.after, maxCursorBytes);
  return out;
}
