/**
 * The one error type of Castellan's HTTP surfaces.
 *
 * Every failure a client can see is a CastellanError; it renders as the SPEC's
 * error shape `{"error":{"code","message","retryable"}}` with an HTTP status.
 * Validation failures from zod become 400s whose message names the field.
 */
import type { ZodError } from 'zod';

export interface ErrorBody {
  error: { code: string; message: string; retryable: boolean };
}

export class CastellanError extends Error {
  readonly status: number;
  readonly code: string;
  readonly retryable: boolean;

  constructor(status: number, code: string, message: string, opts: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CastellanError';
    this.status = status;
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }

  toJSON(): ErrorBody {
    return { error: { code: this.code, message: this.message, retryable: this.retryable } };
  }
}

/** Constructors for the codes the SPEC names, so call sites cannot misspell them. */
export const Errors = {
  badRequest: (message: string, code = 'BAD_REQUEST') => new CastellanError(400, code, message),
  invalidId: (message: string) => new CastellanError(400, 'INVALID_ID', message),
  notFound: (message: string, code = 'NOT_FOUND') => new CastellanError(404, code, message),
  classNotFound: (cls: string) => new CastellanError(404, 'CLASS_NOT_FOUND', `No DurableObject class "${cls}" is known in this namespace.`),
  methodNotAllowed: (message: string) => new CastellanError(405, 'METHOD_NOT_ALLOWED', message),
  conflict: (message: string, code = 'CONFLICT') => new CastellanError(409, code, message),
  notOwner: (message: string) => new CastellanError(409, 'NOT_OWNER', message, { retryable: true }),
  payloadTooLarge: (message: string) => new CastellanError(413, 'PAYLOAD_TOO_LARGE', message),
  unsupportedMediaType: (message: string) => new CastellanError(415, 'UNSUPPORTED_MEDIA_TYPE', message),
  overloaded: (message: string, code = 'OBJECT_OVERLOADED') => new CastellanError(429, code, message, { retryable: true }),
  internal: (message: string, cause?: unknown) => new CastellanError(500, 'INTERNAL', message, { cause }),
  unavailable: (message: string, code = 'UNAVAILABLE', cause?: unknown) =>
    new CastellanError(503, code, message, { retryable: true, cause }),
  timeout: (message: string, code = 'TIMEOUT') => new CastellanError(504, code, message, { retryable: true }),
} as const;

/** A zod failure as a 400 naming every offending field. */
export function fromZod(err: ZodError, what: string, code = 'BAD_REQUEST'): CastellanError {
  return new CastellanError(400, code, `Invalid ${what}: ${formatZodIssues(err)}`);
}

/** `field.path: message; other: message` — readable in logs, responses and CLI errors. */
export function formatZodIssues(err: ZodError): string {
  return err.issues
    .map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

/** Any thrown value as a CastellanError (unknown errors become a 500 that keeps the cause). */
export function asCastellanError(err: unknown): CastellanError {
  if (err instanceof CastellanError) return err;
  return Errors.internal(err instanceof Error ? err.message : String(err), err);
}
