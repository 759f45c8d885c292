/**
 * Long-running commands (`dev`, `sidecar`, later `operator`) run until SIGTERM
 * or SIGINT, then stop cleanly; the exit code says whether stopping worked.
 */
import { describeError, type Logger } from '../common/logger.ts';

export function runUntilSignal(stop: () => Promise<void>, log: Logger, action: string): Promise<number> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
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
  });
}
