/**
 * When the webhook's certificates change: a pure decision over what the
 * Secret holds, what the MutatingWebhookConfiguration trusts and `now`.
 *
 * The rule that keeps admissions from failing during a rotation: the API
 * server must trust a serving certificate before any replica serves it.
 * - A serving certificate is re-issued (same CA) when a third of its validity
 *   is left, or its names changed. The caBundle does not change, so every
 *   replica's old and new certificate are both trusted.
 * - A new CA is created when a third of the newest CA's validity is left. It
 *   is added to the bundle next to the old one (the old CA stays until it
 *   expires). Only once the bundle with the new CA is published in the
 *   webhook configuration and `caPropagationMs` has passed is the serving
 *   certificate re-issued from the new CA; replicas that still serve the old
 *   one are still trusted through the old CA.
 * A serving certificate that must be renewed while the new CA is not yet
 * trusted is signed by the previous CA (the Secret keeps the keys of all
 * live CAs). One action per decision; the caller applies it and asks again.
 */
import { backdateMs, normalizeIp, type CertSummary } from './x509.ts';

export interface CaEntry {
  cert: string;
  summary: CertSummary;
  /** Whether the Secret holds this CA's private key (only such a CA can sign). */
  hasKey: boolean;
}

export interface ServingEntry {
  cert: string;
  summary: CertSummary;
  /** Fingerprint of the live CA that signed it; undefined when none did. */
  issuer: string | undefined;
}

export interface CertState {
  /** CA certificates in the Secret (any order). */
  cas: CaEntry[];
  serving: ServingEntry | undefined;
}

export interface CertWants {
  dnsNames: string[];
  ipAddresses: string[];
  caValidityMs: number;
  certValidityMs: number;
  caPropagationMs: number;
}

export type CertAction =
  | { action: 'keep' }
  | { action: 'new-ca'; reason: string }
  | { action: 'issue-serving'; reason: string; signer: string }
  | { action: 'prune-cas'; reason: string };

/** The CAs not expired at `now`, newest first. */
export function liveCas(cas: CaEntry[], now: number): CaEntry[] {
  return cas.filter((c) => c.summary.isCa && c.summary.notAfter > now).sort((a, b) => b.summary.notBefore - a.summary.notBefore);
}

/** What the webhook configuration's caBundle should be: the live CAs, newest first. */
export function desiredBundle(state: CertState, now: number): string {
  return liveCas(state.cas, now)
    .map((c) => c.cert)
    .join('');
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * @param published fingerprints of the CAs the webhook configuration's caBundle holds now
 */
export function planCertificates(state: CertState, published: ReadonlySet<string>, wants: CertWants, now: number): CertAction {
  const live = liveCas(state.cas, now);
  const newest = live[0];
  if (newest === undefined) return { action: 'new-ca', reason: state.cas.length === 0 ? 'no CA yet' : 'every CA has expired' };
  if (!newest.hasKey) return { action: 'new-ca', reason: "the newest CA's key is not in the Secret" };
  if (newest.summary.notAfter - now < wants.caValidityMs / 3) return { action: 'new-ca', reason: `the CA expires at ${iso(newest.summary.notAfter)}` };
  if (live.length !== state.cas.length) return { action: 'prune-cas', reason: `${state.cas.length - live.length} expired CA(s) in the bundle` };

  // Sign with the newest CA once the API server has had time to trust it; until then with
  // the newest CA it already trusts (or, when it trusts none of ours yet, the newest).
  const newestReady = published.has(newest.summary.fingerprint) && now - (newest.summary.notBefore + backdateMs) >= wants.caPropagationMs;
  const trusted = live.find((c) => c.hasKey && published.has(c.summary.fingerprint));
  const signer = (newestReady ? newest : (trusted ?? newest)).summary.fingerprint;

  const s = state.serving;
  if (s === undefined) return { action: 'issue-serving', reason: 'no serving certificate yet', signer };
  if (s.issuer === undefined) return { action: 'issue-serving', reason: 'the serving certificate is not signed by a live CA', signer };
  if (s.summary.notAfter - now < wants.certValidityMs / 3) return { action: 'issue-serving', reason: `the serving certificate expires at ${iso(s.summary.notAfter)}`, signer };
  if (!sameSet(s.summary.dnsNames, wants.dnsNames) || !sameSet(s.summary.ipAddresses, wants.ipAddresses.map(normalizeIp))) {
    return { action: 'issue-serving', reason: 'the serving certificate names changed', signer };
  }
  if (s.issuer !== newest.summary.fingerprint && newestReady) return { action: 'issue-serving', reason: 'the serving certificate is signed by the previous CA', signer };
  return { action: 'keep' };
}

function sameSet(a: string[], b: string[]): boolean {
  const x = new Set(a);
  return x.size === new Set(b).size && b.every((v) => x.has(v));
}
