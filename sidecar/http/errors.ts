/**
 * Express glue that makes every failure the SPEC's error JSON: unknown routes,
 * malformed bodies, thrown CastellanErrors and unexpected exceptions (logged,
 * answered as 500 without internals).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { asCastellanError, CastellanError, Errors } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(Errors.notFound(`No route for ${req.method} ${req.path}. See the sidecar API in docs/api.md.`, 'ROUTE_NOT_FOUND'));
};

/** Body-parser errors carry `type` and `status`; map them to clear 4xx. */
function fromBodyParser(err: { type?: string; status?: number; message?: string }): CastellanError | undefined {
  switch (err.type) {
    case 'entity.parse.failed':
      return Errors.badRequest(`Request body is not valid JSON: ${err.message ?? ''}`.trim(), 'INVALID_JSON');
    case 'entity.too.large':
      return Errors.payloadTooLarge('Request body is larger than this endpoint accepts.');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return Errors.unsupportedMediaType(err.message ?? 'Unsupported body encoding.');
    case 'request.aborted':
      return Errors.badRequest('The client aborted the request body.', 'REQUEST_ABORTED');
    default:
      return undefined;
  }
}

/**
 * Answers a failed request with the SPEC's error JSON (or drops the
 * connection when the response has started); for express (errorHandler) and
 * the object fast path (sidecar.ts), which bypasses express.
 */
export function errorResponder(log: Logger): (req: IncomingMessage, res: ServerResponse, err: unknown) => void {
  return (req, res, err) => {
    const parsed = typeof err === 'object' && err !== null ? fromBodyParser(err as { type?: string }) : undefined;
    const e = parsed ?? asCastellanError(err);
    if (e.status >= 500 && !(err instanceof CastellanError)) {
      log.error('unhandled error', { method: req.method, path: (req.url ?? '').split('?')[0], error: describeError(err) });
      e.message = 'Internal error in the Castellan sidecar.';
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify(e.toJSON());
    res.writeHead(e.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  const respond = errorResponder(log);
  return (err: unknown, req, res, _next) => respond(req, res, err);
}
