/**
 * Structured JSON logging for every Castellan process.
 *
 * One winston root per process; each component takes a child carrying its own
 * `component` field. Logs go to stderr so that commands keep stdout for their
 * output (a kubeconfig path, a table); containers collect both streams.
 */
import winston from 'winston';

export type Logger = winston.Logger;

const levels = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'];

let root: winston.Logger | undefined;

/** The process-wide logger; level from CASTELLAN_LOG_LEVEL (default info). */
export function rootLogger(): winston.Logger {
  root ??= winston.createLogger({
    level: normaliseLevel(process.env.CASTELLAN_LOG_LEVEL),
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.errors({ stack: true }),
      winston.format.json(),
    ),
    defaultMeta: { pid: process.pid },
    transports: [new winston.transports.Console({ stderrLevels: levels })],
  });
  return root;
}

/** A child logger for one component, e.g. `logger('sidecar.http')`. */
export function logger(component: string, meta: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ component, ...meta });
}

function normaliseLevel(raw: string | undefined): string {
  const level = (raw ?? 'info').toLowerCase();
  return levels.includes(level) ? level : 'info';
}

/** Message and cause chain of an unknown thrown value, for a log field. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause === undefined ? '' : ` (cause: ${describeError(err.cause)})`;
    return `${err.message}${cause}`;
  }
  return String(err);
}
