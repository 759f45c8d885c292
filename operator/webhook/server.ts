/**
 * The admission webhook's HTTPS endpoint (thin adapter, does I/O):
 * `POST /mutate-pods` takes an AdmissionReview, asks the pure planner
 * (inject.ts) and answers. The serving certificate can be swapped while
 * running (`setCertificate`): new TLS handshakes use the new one, open
 * connections finish on the old one, so a rotation fails no request.
 */
import { createServer, type Server } from 'node:https';
import type { NextFunction, Request, Response } from 'express';
import express from 'express';
import { asCastellanError, Errors, fromZod } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { planInjection, type InjectionDecision, type InjectionSettings } from './inject.ts';
import { admissionResponse, admissionReviewSchema, isPodCreate, podOf } from './review.ts';

export const mutatePath = '/mutate-pods';

export interface AdmissionServerOptions {
  host: string;
  port: number;
  settings: InjectionSettings;
  log: Logger;
  /** Called with every decision (metrics). */
  onDecision?: (d: InjectionDecision['decision'] | 'ignored') => void;
}

export class AdmissionServer {
  private readonly opts: AdmissionServerOptions;
  private server: Server | undefined;
  private current: { cert: string; key: string } | undefined;

  constructor(opts: AdmissionServerOptions) {
    this.opts = opts;
  }

  get port(): number {
    const a = this.server?.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  serving(): boolean {
    return this.server?.listening === true;
  }

  /** The certificate being served (PEM), if any. */
  certificate(): string | undefined {
    return this.current?.cert;
  }

  /** Starts serving with this certificate, or swaps it in for new connections. */
  async setCertificate(pem: { cert: string; key: string }): Promise<void> {
    if (this.current?.cert === pem.cert && this.current.key === pem.key) return;
    if (this.server !== undefined) {
      this.server.setSecureContext({ cert: pem.cert, key: pem.key });
      this.current = pem;
      // Open connections are not closed: a client may be sending on an idle keep-alive connection at
      // that very moment (the API server does not retry a POST cut that way); they keep the old
      // certificate, which the caBundle still trusts.
      return;
    }
    const server = createServer({ cert: pem.cert, key: pem.key, minVersion: 'TLSv1.2' }, this.app());
    // Idle keep-alive connections must be closed by the client first: the API server's Go client
    // drops them after 90 s; a server closing earlier races a request sent on them (connection reset).
    server.keepAliveTimeout = 120_000;
    server.headersTimeout = 125_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('tlsClientError', (err) => this.opts.log.debug('TLS handshake failed', { error: describeError(err) }));
    this.server = server;
    this.current = pem;
    this.opts.log.info('admission webhook serving', { host: this.opts.host, port: this.port, path: mutatePath });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private app(): express.Express {
    const app = express();
    app.disable('x-powered-by');
    // Pods can be large (many containers, big env); the API server caps objects at about 3 MiB.
    app.post(mutatePath, express.json({ limit: '8mb', type: () => true }), (req, res) => {
      const parsed = admissionReviewSchema.safeParse(req.body);
      if (!parsed.success) throw fromZod(parsed.error, 'AdmissionReview');
      const review = parsed.data;
      if (!isPodCreate(review)) {
        this.opts.onDecision?.('ignored');
        res.json(admissionResponse(review.request.uid, { decision: 'allow', reason: 'not a pod creation' }));
        return;
      }
      const pod = podOf(review);
      const namespace = review.request.namespace ?? pod.metadata?.namespace ?? 'default';
      const decision = planInjection(pod, namespace, this.opts.settings);
      const who = { namespace, pod: pod.metadata?.name ?? `${pod.metadata?.generateName ?? ''}*`, uid: review.request.uid };
      if (decision.decision === 'deny') this.opts.log.info('pod refused', { ...who, message: decision.message });
      else if (decision.decision === 'patch') this.opts.log.info('sidecar injected', { ...who, reason: decision.reason });
      else this.opts.log.debug('pod left unchanged', { ...who, reason: decision.reason });
      this.opts.onDecision?.(decision.decision);
      res.json(admissionResponse(review.request.uid, decision));
    });
    app.use((_req: Request, _res: Response) => {
      throw Errors.notFound(`Only POST ${mutatePath} is served here.`);
    });
    app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
      const e = asCastellanError((err as { type?: string }).type === 'entity.parse.failed' ? Errors.badRequest('The body is not JSON.') : err);
      if (e.status >= 500) this.opts.log.error('admission request failed', { error: describeError(err) });
      res.status(e.status).json(e.toJSON());
    });
    return app;
  }
}
