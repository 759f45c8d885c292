/**
 * The admission webhook inside the operator (wiring): every replica serves
 * `POST /mutate-pods` over HTTPS with the serving certificate from the
 * Secret, reloaded on each tick; only the leader (operator-managed
 * certificates) also keeps the CA and serving certificate fresh and the
 * webhook configuration's caBundle in step (certs/rotator.ts).
 *
 * A replica serves nothing until it has a certificate, and reports that in
 * /readyz, so the Service sends admission requests only to replicas that can
 * answer them.
 */
import type * as k8s from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import { describeError, type Logger } from '../../common/logger.ts';
import type { OperatorConfig } from '../config.ts';
import type { OperatorDefaults } from '../desired/common.ts';
import { CertRotator } from './certs/rotator.ts';
import { CertStore } from './certs/store.ts';
import { summarize } from './certs/x509.ts';
import { AdmissionServer } from './server.ts';

export interface WebhookOptions {
  config: OperatorConfig;
  defaults: OperatorDefaults;
  kc: k8s.KubeConfig;
  log: Logger;
  registry: Registry;
  /** Clock (tests may not need it; the rotation plan takes `now`). */
  now?: () => number;
}

export class Webhook {
  private readonly opts: WebhookOptions;
  private readonly store: CertStore;
  private readonly rotator: CertRotator | undefined;
  readonly server: AdmissionServer;
  private leading = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private again = false;
  private lastError: string | undefined;
  private readonly rotations: Counter<'action'>;
  private readonly notAfter: Gauge;

  constructor(opts: WebhookOptions) {
    this.opts = opts;
    const wh = opts.config.webhook;
    const log = opts.log;
    this.store = new CertStore(opts.kc, { namespace: wh.namespace ?? opts.config.leaderElection.namespace, secretName: wh.secretName, configurationName: wh.configurationName });
    if (wh.certificates === 'operator') {
      this.rotator = new CertRotator(
        this.store,
        { dnsNames: wh.dnsNames, ipAddresses: wh.ipAddresses, caValidityMs: wh.caValidity, certValidityMs: wh.certValidity, caPropagationMs: wh.caPropagation },
        log.child({ component: 'operator.webhook.certs' }),
      );
    }
    const admissions = new Counter({
      name: 'castellan_operator_webhook_admissions_total',
      help: 'Admission reviews answered, by decision (patch, allow, deny, ignored)',
      labelNames: ['decision'],
      registers: [opts.registry],
    });
    this.rotations = new Counter({ name: 'castellan_operator_webhook_certificate_rotations_total', help: 'Certificate actions taken by the leader (new-ca, issue-serving, prune-cas)', labelNames: ['action'], registers: [opts.registry] });
    this.notAfter = new Gauge({ name: 'castellan_operator_webhook_certificate_not_after_seconds', help: 'Expiry (Unix time) of the serving certificate this replica serves', registers: [opts.registry] });
    this.server = new AdmissionServer({
      host: wh.host,
      port: wh.port,
      settings: { defaults: opts.defaults, resources: wh.sidecarResources, allowNatsOverride: wh.allowNatsOverride, namespaces: opts.config.namespaces },
      log,
      onDecision: (d) => admissions.inc({ decision: d }),
    });
  }

  /** Readiness: true once serving. */
  ready(): true | string {
    if (this.server.serving()) return true;
    return `no serving certificate yet${this.lastError === undefined ? '' : ` (${this.lastError})`}`;
  }

  start(): void {
    this.schedule(0);
  }

  /** The leader keeps the certificates (operator-managed mode); checked at once. */
  startLeading(): void {
    this.leading = true;
    this.schedule(0);
  }

  stopLeading(): void {
    this.leading = false;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** Runs a round after `ms`; rounds never overlap (a request during one runs right after it). */
  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        const again = this.again;
        this.again = false;
        // Until serving, retry quickly: a fresh install waits for the leader's first certificate.
        const interval = this.opts.config.webhook.checkInterval;
        this.schedule(again ? 0 : this.server.serving() ? interval : Math.min(1_000, interval));
      });
    }, ms);
    this.timer.unref();
  }

  /** One round: rotate (leader), then load the serving certificate from the Secret. Never throws. */
  private async tick(): Promise<void> {
    try {
      let pem: { cert: string; key: string } | undefined;
      if (this.leading && this.rotator !== undefined) {
        const r = await this.rotator.rotate(this.now());
        for (const a of r.actions) this.rotations.inc({ action: a.action });
        if (r.published === 'absent') this.opts.log.warn('webhook configuration not found; its caBundle cannot be set', { configuration: this.opts.config.webhook.configurationName });
        pem = r.serving;
      }
      if (pem === undefined) {
        const stored = await this.store.read();
        const d = stored?.data;
        if (d?.['tls.crt'] !== undefined && d['tls.key'] !== undefined && d['tls.crt'] !== '') pem = { cert: d['tls.crt'], key: d['tls.key'] };
      }
      if (pem !== undefined && !this.stopped) {
        const before = this.server.certificate();
        await this.server.setCertificate(pem);
        if (before !== undefined && before !== pem.cert) this.opts.log.info('webhook serving certificate reloaded');
        this.notAfter.set(summarize(pem.cert).notAfter / 1000);
      }
      this.lastError = undefined;
    } catch (err) {
      this.lastError = describeError(err);
      this.opts.log.warn('webhook certificate round failed; retrying', { error: this.lastError });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
    await this.server.stop();
  }
}
