/**
 * The sidecar's admin listener, on the pod IP (CASTELLAN_ADMIN_PORT; off when
 * unset): the kubelet's httpGet probes (`/healthz`, `/readyz`), Prometheus
 * scraping (`/metrics`) and the app container's preStop hook (`/drain`). The
 * object and queue API stays on loopback (SPEC §1); nothing here reads or
 * changes an object or a message.
 *
 * `/drain` makes this pod hand its objects over (readiness fails, the host
 * stops taking new activations, finishes the turns in flight, releases its
 * leases) and answers once that is done, so the kubelet sends the app SIGTERM
 * only after no call can reach it any more. It is idempotent, and what it
 * starts is the first half of the sidecar's own shutdown.
 */
import type { Server } from 'node:http';
import express from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../../common/logger.ts';
import { errorHandler, notFoundHandler } from './errors.ts';
import { healthRouter, type Readiness } from './health.ts';

export interface AdminOptions {
  host: string;
  port: number;
  readiness: Readiness;
  registry: Registry;
  drain: () => Promise<void>;
  log: Logger;
}

export async function startAdminServer(opts: AdminOptions): Promise<Server> {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(healthRouter(opts.readiness, opts.registry));
  const drain = async (_req: express.Request, res: express.Response) => {
    const t0 = Date.now();
    opts.log.info('drain requested (preStop)');
    await opts.drain();
    opts.log.info('drained', { ms: Date.now() - t0 });
    res.json({ drained: true, ms: Date.now() - t0 });
  };
  app.get('/drain', drain);
  app.post('/drain', drain);
  app.use(notFoundHandler);
  app.use(errorHandler(opts.log));
  return new Promise((resolve, reject) => {
    const server = app.listen(opts.port, opts.host);
    server.once('listening', () => resolve(server));
    server.once('error', reject);
  });
}
