import { describe, expect, it } from '@jest/globals';
import { z } from 'zod';
import { asCastellanError, CastellanError, Errors, fromZod } from '../../common/errors.ts';

describe('CastellanError', () => {
  it('renders the SPEC error shape', () => {
    const e = Errors.overloaded('Queue of object "a" is full.');
    expect(e.status).toBe(429);
    expect(JSON.parse(JSON.stringify(e))).toEqual({
      error: { code: 'OBJECT_OVERLOADED', message: 'Queue of object "a" is full.', retryable: true },
    });
  });

  it('uses UPPER_SNAKE codes with fitting statuses', () => {
    const all = [
      Errors.badRequest('x'),
      Errors.invalidId('x'),
      Errors.classNotFound('c'),
      Errors.conflict('x'),
      Errors.notOwner('x'),
      Errors.payloadTooLarge('x'),
      Errors.overloaded('x'),
      Errors.unavailable('x', 'OBJECT_UNAVAILABLE'),
      Errors.timeout('x', 'OBJECT_TIMEOUT'),
    ];
    for (const e of all) {
      expect(e.code).toMatch(/^[A-Z][A-Z0-9_]*$/);
      expect(e.status).toBeGreaterThanOrEqual(400);
      expect(e.retryable).toBe(e.status === 429 || e.status >= 503 || e.code === 'NOT_OWNER');
    }
  });

  it('names every failing field of a zod error', () => {
    const r = z.object({ maxMessages: z.number().max(10), waitSeconds: z.number() }).safeParse({ maxMessages: 11 });
    expect(r.success).toBe(false);
    const e = fromZod(r.error!, 'receive request');
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/^Invalid receive request: maxMessages: .*; waitSeconds: /);
  });

  it('wraps unknown errors as a 500 keeping the cause', () => {
    const cause = new Error('boom');
    const e = asCastellanError(cause);
    expect(e).toBeInstanceOf(CastellanError);
    expect(e.status).toBe(500);
    expect(e.cause).toBe(cause);
    expect(asCastellanError(Errors.invalidId('x')).code).toBe('INVALID_ID');
  });
});
