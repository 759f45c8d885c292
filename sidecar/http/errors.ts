/**
 * Express glue that makes every failure the SPEC's error JSON: unknown routes,
 * malformed bodies, thrown CastellanErrors and unexpected exceptions (logged,
 * answered as 500 without internals).
 */
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

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const parsed = typeof err === 'object' && err !== null ? fromBodyParser(err as { type?: string }) : undefined;
    const e = parsed ?? asCastellanError(err);
    if (e.status >= 500 && !(err instanceof CastellanError)) {
      log.error('unhandled error', { method: req.method, path: req.path, error: describeError(err) });
      e.message = 'Internal error in the Castellan sidecar.';
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(e.status).json(e.toJSON());
  };
}
