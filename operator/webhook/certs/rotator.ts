/**
 * The leader's certificate upkeep (does I/O through CertStore): read the
 * Secret and the published caBundle, let plan.ts decide, apply its actions
 * (create a CA, issue a serving certificate, drop expired CAs), write the
 * Secret once, then publish the live CAs as the webhook's caBundle.
 *
 * Only the leader calls this (two writers would race; the Secret's
 * resourceVersion makes the loser fail and retry instead of overwrite).
 * Unreadable Secret contents are replaced, never trusted: a certificate that
 * does not parse is dropped, a key that matches no CA is dropped.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import type { Logger } from '../../../common/logger.ts';
import { desiredBundle, liveCas, planCertificates, type CaEntry, type CertAction, type CertState, type CertWants } from './plan.ts';
import type { CertBackend, SecretData, StoredSecret } from './store.ts';
import { createCa, issueServing, signedBy, splitPem, summarize, type KeyPairPem } from './x509.ts';

export interface RotationResult {
  actions: CertAction[];
  serving: KeyPairPem | undefined;
  published: 'updated' | 'unchanged' | 'absent';
}

interface Working {
  /** CA certificate → its key, when the Secret has it. */
  cas: { cert: string; key: string | undefined }[];
  serving: KeyPairPem | undefined;
}

export class CertRotator {
  private readonly store: CertBackend;
  private readonly wants: CertWants;
  private readonly log: Logger;

  constructor(store: CertBackend, wants: CertWants, log: Logger) {
    this.store = store;
    this.wants = wants;
    this.log = log;
  }

  async rotate(now: number): Promise<RotationResult> {
    const stored = await this.store.read();
    const published = await this.store.published();
    const publishedFingerprints = new Set(published === undefined ? [] : fingerprints(published.bundle));
    const w = parse(stored);
    const actions: CertAction[] = [];
    for (let i = 0; i < 4; i++) {
      const action = planCertificates(state(w), publishedFingerprints, this.wants, now);
      if (action.action === 'keep') break;
      actions.push(action);
      this.log.info('webhook certificates: rotating', { action: action.action, reason: action.reason });
      this.apply(w, action, now);
    }
    if (actions.length > 0) {
      const live = liveCas(state(w).cas, now).map((c) => c.cert);
      const kept = w.cas.filter((c) => live.includes(c.cert));
      const data: SecretData = {
        'ca.crt': kept.map((c) => c.cert).join(''),
        'ca.key': kept.map((c) => c.key ?? '').join(''),
        'tls.crt': w.serving?.cert,
        'tls.key': w.serving?.key,
      };
      await this.store.write(data, stored);
    }
    const result = await this.store.publish(desiredBundle(state(w), now));
    if (result === 'updated') this.log.info('webhook caBundle published', { configuration: this.store.configurationName, cas: liveCas(state(w).cas, now).length });
    return { actions, serving: w.serving, published: result };
  }

  private apply(w: Working, action: CertAction, now: number): void {
    switch (action.action) {
      case 'new-ca': {
        const ca = createCa(now, this.wants.caValidityMs);
        // Older live CAs stay trusted: serving certificates they signed may still be served.
        const live = new Set(liveCas(state(w).cas, now).map((c) => c.cert));
        w.cas = [{ cert: ca.cert, key: ca.key }, ...w.cas.filter((c) => live.has(c.cert))];
        return;
      }
      case 'prune-cas': {
        const live = new Set(liveCas(state(w).cas, now).map((c) => c.cert));
        w.cas = w.cas.filter((c) => live.has(c.cert));
        return;
      }
      case 'issue-serving': {
        const signer = w.cas.find((c) => fingerprint(c.cert) === action.signer);
        if (signer?.key === undefined) throw new Error(`no key for the CA ${action.signer}`);
        const validity = Math.min(this.wants.certValidityMs, summarize(signer.cert).notAfter - now);
        w.serving = issueServing({ cert: signer.cert, key: signer.key }, now, validity, this.wants.dnsNames, this.wants.ipAddresses);
        return;
      }
      case 'keep':
        return;
    }
  }
}

function parse(stored: StoredSecret | undefined): Working {
  const d = stored?.data ?? {};
  const keys = (d['ca.key'] ?? '').match(/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/g) ?? [];
  const cas: Working['cas'] = [];
  for (const cert of splitPem(d['ca.crt'] ?? '')) {
    if (!parses(cert)) continue;
    cas.push({ cert, key: keys.find((k) => matches(cert, k)) });
  }
  const crt = d['tls.crt'];
  const key = d['tls.key'];
  const serving = crt !== undefined && key !== undefined && parses(crt) && matches(crt, key) ? { cert: crt, key } : undefined;
  return { cas, serving };
}

function state(w: Working): CertState {
  const cas: CaEntry[] = w.cas.map((c) => ({ cert: c.cert, summary: summarize(c.cert), hasKey: c.key !== undefined }));
  let serving: CertState['serving'];
  if (w.serving !== undefined) {
    const cert = w.serving.cert;
    const issuer = cas.find((c) => c.summary.isCa && safeSignedBy(cert, c.cert));
    serving = { cert, summary: summarize(cert), issuer: issuer?.summary.fingerprint };
  }
  return { cas, serving };
}

function parses(pem: string): boolean {
  try {
    summarize(pem);
    return true;
  } catch {
    return false;
  }
}

function fingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

function fingerprints(bundle: string): string[] {
  return splitPem(bundle).filter(parses).map(fingerprint);
}

/** Does the private key belong to the certificate? */
function matches(certPem: string, keyPem: string): boolean {
  try {
    const pub = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
    return pub.equals(createPublicKey(keyPem).export({ type: 'spki', format: 'der' }));
  } catch {
    return false;
  }
}

function safeSignedBy(cert: string, ca: string): boolean {
  try {
    return signedBy(cert, ca);
  } catch {
    return false;
  }
}
