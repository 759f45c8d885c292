/**
 * The leader's certificate upkeep (operator/webhook/certs/rotator.ts) over an
 * in-memory Secret and caBundle (certs/fake-store.ts): it fills an empty
 * Secret, renews over months of simulated time so that what the Secret serves
 * is always signed by a CA of the published caBundle, keeps every live CA's
 * key, replaces garbage, survives a lost CA key without dropping the trusted
 * CA, and loses a write race instead of overwriting.
 */
import { describe, expect, it } from '@jest/globals';
import { logger } from '../../common/logger.ts';
import { CertRotator } from '../../operator/webhook/certs/rotator.ts';
import { FakeCertStore } from '../../operator/webhook/certs/fake-store.ts';
import type { CertWants } from '../../operator/webhook/certs/plan.ts';
import { signedBy, splitPem, summarize } from '../../operator/webhook/certs/x509.ts';

const day = 86_400_000;
const wants: CertWants = { dnsNames: ['wh.ns.svc'], ipAddresses: [], caValidityMs: 90 * day, certValidityMs: 9 * day, caPropagationMs: 60_000 };
const log = logger('test.rotator');

function trustedNow(store: FakeCertStore, now: number): boolean {
  const crt = store.secret?.data['tls.crt'];
  if (crt === undefined || summarize(crt).notAfter <= now) return false;
  return splitPem(store.bundle ?? '').some((ca) => summarize(ca).notAfter > now && signedBy(crt, ca));
}

describe('CertRotator', () => {
  it('fills an empty Secret and the caBundle, then does nothing until renewal is due', async () => {
    const store = new FakeCertStore();
    const r = new CertRotator(store, wants, log);
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const first = await r.rotate(t0);
    expect(first.actions.map((a) => a.action)).toEqual(['new-ca', 'issue-serving']);
    expect(first.published).toBe('updated');
    expect(first.serving?.cert).toBe(store.secret?.data['tls.crt']);
    expect(splitPem(store.bundle ?? '')).toHaveLength(1);
    expect(trustedNow(store, t0)).toBe(true);
    const again = await r.rotate(t0 + 60_000);
    expect(again).toMatchObject({ actions: [], published: 'unchanged' });
    expect(store.writes).toBe(1);
  });

  it('over 200 days always serves a certificate the published bundle trusts, keeping the keys of all live CAs', async () => {
    const store = new FakeCertStore();
    const r = new CertRotator(store, wants, log);
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const counts: Record<string, number> = {};
    let maxCas = 0;
    for (let now = t0; now < t0 + 200 * day; now += 12 * 3_600_000) {
      const res = await r.rotate(now);
      for (const a of res.actions) counts[a.action] = (counts[a.action] ?? 0) + 1;
      expect(trustedNow(store, now)).toBe(true);
      const cas = splitPem(store.secret?.data['ca.crt'] ?? '');
      const keys = (store.secret?.data['ca.key'] ?? '').match(/BEGIN PRIVATE KEY/g) ?? [];
      expect(keys).toHaveLength(cas.length);
      expect(store.bundle).toBe(cas.filter((c) => summarize(c).notAfter > now).join(''));
      maxCas = Math.max(maxCas, cas.length);
    }
    expect(counts['new-ca']).toBeGreaterThanOrEqual(3);
    expect(counts['issue-serving']).toBeGreaterThanOrEqual(25);
    expect(maxCas).toBe(2);
  });

  it('replaces garbage, keeps trusting a CA whose key was lost, and leaves the caBundle alone when the configuration is missing', async () => {
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const store = new FakeCertStore();
    store.secret = { data: { 'ca.crt': 'not a certificate', 'tls.crt': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'tls.key': 'x' }, resourceVersion: '0' };
    const r = new CertRotator(store, wants, log);
    expect((await r.rotate(t0)).actions.map((a) => a.action)).toEqual(['new-ca', 'issue-serving']);
    expect(trustedNow(store, t0)).toBe(true);

    // The CA key disappears: a new CA signs from now on, the old one stays trusted while it lives.
    const oldCa = store.secret.data['ca.crt'] ?? '';
    store.secret = { ...store.secret, data: { ...store.secret.data, 'ca.key': '' } };
    const res = await r.rotate(t0 + day);
    expect(res.actions.map((a) => a.action)).toEqual(['new-ca']);
    expect(splitPem(store.bundle ?? '')).toEqual([expect.any(String), oldCa]);
    expect(trustedNow(store, t0 + day)).toBe(true);
    // Once the new CA is published and propagated, the serving certificate moves to it.
    const moved = await r.rotate(t0 + day + 120_000);
    expect(moved.actions.map((a) => a.action)).toEqual(['issue-serving']);
    expect(signedBy(store.secret.data['tls.crt'] ?? '', splitPem(store.bundle ?? '')[0] ?? '')).toBe(true);

    const noConfig = new FakeCertStore();
    noConfig.bundle = undefined;
    const r2 = new CertRotator(noConfig, wants, log);
    expect(await r2.rotate(t0)).toMatchObject({ published: 'absent' });
    expect(noConfig.secret?.data['tls.crt']).toBeDefined();
  });

  it('loses a write race instead of overwriting the other writer', async () => {
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const store = new FakeCertStore();
    const r = new CertRotator(store, wants, log);
    const original = store.read.bind(store);
    // Another writer gets in between this rotator's read and its write.
    store.read = async () => {
      const seen = await original();
      store.secret = { data: { 'ca.crt': '' }, resourceVersion: 'other' };
      return seen;
    };
    await expect(r.rotate(t0)).rejects.toMatchObject({ code: 409 });
    expect(store.secret).toEqual({ data: { 'ca.crt': '' }, resourceVersion: 'other' });
  });
});
