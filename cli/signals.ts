/**
 * Long-running commands (`dev`, `sidecar`, later `operator`) run until SIGTERM
 * SIGINT or SIGHUP, then stop cleanly; the exit code says whether stopping
 * worked. A second signal while stopping exits at once.
 */
import { describeError, type Logger } from '../common/logger.ts';

export function runUntilSignal(stop: () => Promise<void>, log: Logger, action: string): Promise<number> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.off(s, onSignal);
      // A second signal while stopping forces the exit (exit hooks kill whatever children are left).
      for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
        process.once(s, () => {
          log.warn('second signal while stopping; exiting now', { signal: s });
          process.exit(130);
        });
      }
      log.info(`signal received; ${action}`, { signal });
      stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error('error while stopping', { error: describeError(err) });
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    process.once('SIGHUP', onSignal);
  });
}
