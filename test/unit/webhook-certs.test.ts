/**
 * The webhook's certificates (operator/webhook/certs/): what x509.ts builds
 * is a valid CA and serving certificate (OpenSSL through Node parses them and
 * a real TLS handshake verifies the chain and the names), and the rotation
 * plan renews serving certificates and CAs before they expire in an order
 * that never serves a certificate the published caBundle does not trust.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { desiredBundle, planCertificates, type CertAction, type CertState, type CertWants } from '../../operator/webhook/certs/plan.ts';
import { backdateMs, createCa, issueServing, normalizeIp, signedBy, splitPem, summarize, type KeyPairPem } from '../../operator/webhook/certs/x509.ts';

const day = 86_400_000;

async function handshake(serving: KeyPairPem, caBundle: string, servername: string | undefined): Promise<{ ok: boolean; error?: string }> {
  const server = createServer({ cert: serving.cert, key: serving.key }, (s) => s.end('hello'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  try {
    return await new Promise((resolve) => {
      const sock = connect({ host: '127.0.0.1', port, ca: caBundle, servername, rejectUnauthorized: true }, () => {
        sock.end();
        resolve({ ok: true });
      });
      sock.once('error', (err) => resolve({ ok: false, error: err.message }));
    });
  } finally {
    server.close();
  }
}

describe('x509: self-signed CA and serving certificates', () => {
  it('builds a CA and a serving certificate that OpenSSL verifies for the DNS names and IP addresses', async () => {
    const now = Date.now();
    const ca = createCa(now, 365 * day);
    const caX = new X509Certificate(ca.cert);
    expect(caX.ca).toBe(true);
    expect(caX.checkIssued(caX)).toBe(true);
    expect(caX.verify(caX.publicKey)).toBe(true);
    expect(caX.validFromDate.getTime()).toBe(Math.floor((now - backdateMs) / 1000) * 1000);
    expect(caX.validToDate.getTime()).toBe(Math.floor((now + 365 * day) / 1000) * 1000);

    const serving = issueServing(ca, now, 30 * day, ['castellan-webhook.castellan-system.svc', 'castellan-webhook'], ['127.0.0.1', '::1']);
    const s = summarize(serving.cert);
    expect(s.isCa).toBe(false);
    expect(s.dnsNames).toEqual(['castellan-webhook.castellan-system.svc', 'castellan-webhook']);
    expect(s.ipAddresses).toEqual(['127.0.0.1', normalizeIp('::1')]);
    expect(signedBy(serving.cert, ca.cert)).toBe(true);
    const x = new X509Certificate(serving.cert);
    expect(x.checkHost('castellan-webhook.castellan-system.svc')).toBe('castellan-webhook.castellan-system.svc');
    expect(x.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x.checkHost('other.example')).toBeUndefined();
    expect(x.keyUsage).toContain('1.3.6.1.5.5.7.3.1');

    // A real TLS handshake: by IP (no SNI) and by DNS name; a foreign CA is refused.
    expect(await handshake(serving, ca.cert, undefined)).toEqual({ ok: true });
    expect(await handshake(serving, ca.cert, 'castellan-webhook.castellan-system.svc')).toEqual({ ok: true });
    expect((await handshake(serving, ca.cert, 'other.example')).ok).toBe(false);
    const foreign = createCa(now, day);
    expect((await handshake(serving, foreign.cert, undefined)).ok).toBe(false);
    // A bundle of two CAs trusts certificates of either.
    expect(await handshake(serving, foreign.cert + ca.cert, undefined)).toEqual({ ok: true });
    expect(splitPem(foreign.cert + ca.cert)).toEqual([foreign.cert, ca.cert]);
  });

  it('refuses to issue a certificate without any name', () => {
    const ca = createCa(Date.now(), day);
    expect(() => issueServing(ca, Date.now(), day, [], [])).toThrow(/DNS name or IP address/);
  });
});

describe('rotation plan', () => {
  const wants: CertWants = { dnsNames: ['wh.ns.svc'], ipAddresses: ['127.0.0.1'], caValidityMs: 90 * day, certValidityMs: 9 * day, caPropagationMs: 60_000 };

  /** A Secret's worth of certificates, evolved by applying each planned action, as the rotator does. */
  class World {
    cas: KeyPairPem[] = [];
    serving: KeyPairPem | undefined;
    published = new Set<string>();

    state(): CertState {
      const entries = this.cas.map((c) => ({ cert: c.cert, summary: summarize(c.cert), hasKey: true }));
      const issuer = this.serving === undefined ? undefined : entries.find((c) => signedBy(this.serving?.cert ?? '', c.cert));
      return {
        cas: entries,
        serving: this.serving === undefined ? undefined : { cert: this.serving.cert, summary: summarize(this.serving.cert), issuer: issuer?.summary.fingerprint },
      };
    }

    apply(a: CertAction, now: number): void {
      if (a.action === 'new-ca') this.cas = [createCa(now, wants.caValidityMs), ...this.cas.filter((c) => summarize(c.cert).notAfter > now)];
      if (a.action === 'prune-cas') this.cas = this.cas.filter((c) => summarize(c.cert).notAfter > now);
      if (a.action === 'issue-serving') {
        const ca = this.cas.find((c) => summarize(c.cert).fingerprint === a.signer) as KeyPairPem;
        this.serving = issueServing(ca, now, Math.min(wants.certValidityMs, summarize(ca.cert).notAfter - now), wants.dnsNames, wants.ipAddresses);
      }
    }

    /** Plans and applies until "keep"; then publishes the bundle (unless told not to). Returns the actions. */
    settle(now: number, publish = true): string[] {
      const done: string[] = [];
      for (let i = 0; i < 5; i++) {
        const a = planCertificates(this.state(), this.published, wants, now);
        if (a.action === 'keep') break;
        done.push(a.action);
        this.apply(a, now);
      }
      expect(done.length).toBeLessThan(5);
      if (publish) this.published = new Set(splitPem(desiredBundle(this.state(), now)).map((c) => summarize(c).fingerprint));
      return done;
    }

    /** Is the serving certificate trusted by the published bundle, and not expired? */
    trusted(now: number): boolean {
      if (this.serving === undefined) return false;
      if (summarize(this.serving.cert).notAfter <= now) return false;
      return this.cas.some((c) => this.published.has(summarize(c.cert).fingerprint) && summarize(c.cert).notAfter > now && signedBy(this.serving?.cert ?? '', c.cert));
    }
  }

  it('starts with a CA and a serving certificate, then keeps them', () => {
    const w = new World();
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    expect(w.settle(t0)).toEqual(['new-ca', 'issue-serving']);
    expect(w.trusted(t0)).toBe(true);
    expect(w.settle(t0 + 60_000)).toEqual([]);
  });

  it('over two CA lifetimes, renews everything in time and never serves an untrusted certificate', () => {
    const w = new World();
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    w.settle(t0);
    const seen: Record<string, number> = {};
    let caRotations = 0;
    // Check every 6 hours for 200 days (the CA lives 90 days, serving certificates 9).
    for (let now = t0; now < t0 + 200 * day; now += 6 * 3_600_000) {
      const actions = w.settle(now);
      for (const a of actions) seen[a] = (seen[a] ?? 0) + 1;
      if (actions.includes('new-ca')) caRotations++;
      expect(w.trusted(now)).toBe(true);
    }
    expect(caRotations).toBeGreaterThanOrEqual(2);
    expect(seen['issue-serving']).toBeGreaterThanOrEqual(25);
    expect(seen['prune-cas'] ?? 0).toBeGreaterThanOrEqual(1);
  });

  it('re-issues on new names, a missing CA key or a serving certificate from a foreign CA', () => {
    const now = Date.parse('2026-03-01T00:00:00Z');
    const w = new World();
    w.settle(now);
    expect(planCertificates(w.state(), w.published, { ...wants, dnsNames: ['other.ns.svc'] }, now)).toMatchObject({ action: 'issue-serving', reason: 'the serving certificate names changed' });
    const foreign = issueServing(createCa(now, day), now, day, ['wh.ns.svc'], []).cert;
    const stranger = { ...w.state(), serving: { cert: foreign, summary: summarize(foreign), issuer: undefined } };
    expect(planCertificates(stranger, w.published, wants, now)).toMatchObject({ action: 'issue-serving', reason: expect.stringContaining('not signed by a live CA') });
    const keyless = { ...w.state(), cas: w.state().cas.map((c) => ({ ...c, hasKey: false })) };
    expect(planCertificates(keyless, w.published, wants, now)).toMatchObject({ action: 'new-ca', reason: expect.stringContaining('key') });
  });

  it('moves to a new CA only once the bundle with it is published and propagated; renewals meanwhile use the old CA', () => {
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const w = new World();
    w.settle(t0);
    const oldCa = summarize(w.cas[0]!.cert).fingerprint;
    const late = t0 + 61 * day; // less than a third of the CA's 90 days left
    // The new CA is created but (say the configuration update failed) not published.
    expect(w.settle(late, false)).toEqual(['new-ca', 'issue-serving']);
    expect(w.cas).toHaveLength(2);
    // The serving certificate had expired: it was renewed from the old, trusted CA.
    expect(signedBy(w.serving!.cert, w.cas[1]!.cert)).toBe(true);
    expect(summarize(w.cas[1]!.cert).fingerprint).toBe(oldCa);
    expect(w.trusted(late)).toBe(true);
    expect(w.settle(late + day, false)).toEqual([]);
    // Published now: still the old CA until the propagation time has passed.
    w.settle(late + day);
    const after = late + day + 1_000;
    expect(planCertificates(w.state(), w.published, wants, after)).toMatchObject({ action: 'issue-serving', reason: 'the serving certificate is signed by the previous CA' });
    w.settle(after);
    expect(signedBy(w.serving!.cert, w.cas[0]!.cert)).toBe(true);
    expect(w.trusted(after)).toBe(true);
  });

  it('waits caPropagation after a new CA is published before serving from it', () => {
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const w = new World();
    w.settle(t0);
    const late = t0 + 61 * day;
    for (let now = t0; now < late; now += day) w.settle(now);
    expect(w.settle(late)).toEqual(['new-ca']);
    expect(planCertificates(w.state(), w.published, wants, late + 30_000)).toEqual({ action: 'keep' });
    expect(planCertificates(w.state(), w.published, wants, late + wants.caPropagationMs)).toMatchObject({ action: 'issue-serving', signer: summarize(w.cas[0]!.cert).fingerprint });
  });
});
