/**
 * Self-signed CA and serving certificates for the admission webhook, built
 * with Node's crypto (ECDSA P-256 keys, ecdsa-with-SHA256 signatures) and the
 * DER constructors of der.ts; no I/O. `summarize` reads a PEM certificate back
 * into the facts the rotation plan (plan.ts) decides on.
 *
 * What the API server's Go TLS client requires, and why these certificates
 * pass: the serving certificate names the webhook's host in subjectAltName
 * (DNS names and IP addresses; the CN is ignored), carries extKeyUsage
 * serverAuth, and is signed by a CA whose basicConstraints say CA:TRUE with
 * keyUsage keyCertSign. Validity starts one minute before `now`, so a node
 * whose clock is slightly behind still accepts a fresh certificate.
 */
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isIPv4 } from 'node:net';
import * as der from './der.ts';

export interface KeyPairPem {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (PKCS#8). */
  key: string;
}

/** What the rotation plan needs to know about a certificate. */
export interface CertSummary {
  notBefore: number;
  notAfter: number;
  dnsNames: string[];
  ipAddresses: string[];
  isCa: boolean;
  fingerprint: string;
}

export const backdateMs = 60_000;

const oids = {
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
};

function name(cn: string): Buffer {
  return der.sequence(
    der.set(der.sequence(der.oid(oids.organization), der.utf8String('castellan'))),
    der.set(der.sequence(der.oid(oids.commonName), der.utf8String(cn))),
  );
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return der.sequence(der.oid(id), ...(critical ? [der.boolean(true)] : []), der.octetString(value));
}

/** SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2, method 1). */
function keyId(spki: Buffer): Buffer {
  // SPKI = SEQUENCE { algorithm SEQUENCE, subjectPublicKey BIT STRING }: the BIT STRING is the tail.
  // For a P-256 key the point is the last 65 bytes.
  return createHash('sha1').update(spki.subarray(spki.length - 65)).digest();
}

function serial(): Buffer {
  const b = randomBytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x01;
  return b;
}

function newKey(): { privateKey: KeyObject; spki: Buffer; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, spki: publicKey.export({ type: 'spki', format: 'der' }), pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

interface TbsInput {
  issuer: Buffer;
  subject: Buffer;
  spki: Buffer;
  now: number;
  validityMs: number;
  extensions: Buffer[];
}

function certificate(tbsIn: TbsInput, signer: KeyObject): string {
  const algorithm = der.sequence(der.oid(oids.ecdsaWithSha256));
  const tbs = der.sequence(
    der.explicit(0, der.smallInteger(2)),
    der.unsignedInteger(serial()),
    algorithm,
    tbsIn.issuer,
    der.sequence(der.time(new Date(tbsIn.now - backdateMs)), der.time(new Date(tbsIn.now + tbsIn.validityMs))),
    tbsIn.subject,
    tbsIn.spki,
    der.explicit(3, der.sequence(...tbsIn.extensions)),
  );
  const signature = sign('sha256', tbs, signer);
  const body = der.sequence(tbs, algorithm, der.bitString(signature)).toString('base64');
  return `-----BEGIN CERTIFICATE-----\n${body.replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
}

/** A new self-signed CA valid from `now` (minus the backdate) for `validityMs`. */
export function createCa(now: number, validityMs: number, commonName = 'castellan-webhook-ca'): KeyPairPem {
  const k = newKey();
  const subject = name(`${commonName} ${new Date(now).toISOString()}`);
  const cert = certificate(
    {
      issuer: subject,
      subject,
      spki: k.spki,
      now,
      validityMs,
      extensions: [
        extension(oids.basicConstraints, true, der.sequence(der.boolean(true))),
        // digitalSignature | keyCertSign | cRLSign = 1000 0110, last bit unused.
        extension(oids.keyUsage, true, der.bitString(Buffer.from([0x86]), 1)),
        extension(oids.subjectKeyIdentifier, false, der.octetString(keyId(k.spki))),
      ],
    },
    k.privateKey,
  );
  return { cert, key: k.pem };
}

/** A serving certificate for these names, signed by `ca`. */
export function issueServing(ca: KeyPairPem, now: number, validityMs: number, dnsNames: string[], ipAddresses: string[]): KeyPairPem {
  if (dnsNames.length === 0 && ipAddresses.length === 0) throw new Error('a serving certificate needs at least one DNS name or IP address');
  const caCert = new X509Certificate(ca.cert);
  const caSpki = caCert.publicKey.export({ type: 'spki', format: 'der' });
  const k = newKey();
  const sans = [
    ...dnsNames.map((d) => der.implicitPrimitive(2, Buffer.from(d, 'ascii'))),
    ...ipAddresses.map((ip) => der.implicitPrimitive(7, ipBytes(ip))),
  ];
  const cert = certificate(
    {
      issuer: issuerName(caCert),
      subject: name(dnsNames[0] ?? ipAddresses[0] ?? 'castellan-webhook'),
      spki: k.spki,
      now,
      validityMs,
      extensions: [
        extension(oids.basicConstraints, true, der.sequence()),
        // digitalSignature = 1000 0000, seven bits unused.
        extension(oids.keyUsage, true, der.bitString(Buffer.from([0x80]), 7)),
        extension(oids.extKeyUsage, false, der.sequence(der.oid(oids.serverAuth))),
        extension(oids.subjectAltName, false, der.sequence(...sans)),
        extension(oids.subjectKeyIdentifier, false, der.octetString(keyId(k.spki))),
        extension(oids.authorityKeyIdentifier, false, der.sequence(der.implicitPrimitive(0, keyId(caSpki)))),
      ],
    },
    createPrivateKey(ca.key),
  );
  return { cert, key: k.pem };
}

/** The CA's subject exactly as encoded in its certificate (the issuer of what it signs). */
function issuerName(ca: X509Certificate): Buffer {
  // Certificate → tbsCertificate → [version, serial, signature, issuer, validity, subject, ...]; take subject (6th).
  const raw = ca.raw;
  const tbs = children(raw, 0)[0] as { start: number; end: number };
  const fields = children(raw, tbs.start);
  const subject = fields[5] as { start: number; end: number };
  return raw.subarray(subject.start, subject.end);
}

/** The TLV elements inside the constructed element starting at `offset`. */
function children(buf: Buffer, offset: number): { start: number; end: number }[] {
  const header = (at: number): { len: number; headerLen: number } => {
    const first = buf[at + 1] as number;
    if (first < 0x80) return { len: first, headerLen: 2 };
    const n = first & 0x7f;
    let len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[at + 2 + i] as number);
    return { len, headerLen: 2 + n };
  };
  const outer = header(offset);
  const out: { start: number; end: number }[] = [];
  for (let at = offset + outer.headerLen; at < offset + outer.headerLen + outer.len; ) {
    const h = header(at);
    out.push({ start: at, end: at + h.headerLen + h.len });
    at += h.headerLen + h.len;
  }
  return out;
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand "::" and write 8 groups of 16 bits.
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new Error(`not an IP address: ${ip}`);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** One spelling per address (IPv6 as 8 full hex groups), so that sets of addresses compare. */
export function normalizeIp(ip: string): string {
  if (isIPv4(ip)) return ip;
  return (ipBytes(ip).toString('hex').match(/.{4}/g) ?? []).join(':');
}

/** The facts of a PEM certificate (the first one in the text). */
export function summarize(certPem: string): CertSummary {
  const x = new X509Certificate(certPem);
  const san = x.subjectAltName ?? '';
  const entries = san === '' ? [] : san.split(', ');
  return {
    notBefore: x.validFromDate.getTime(),
    notAfter: x.validToDate.getTime(),
    dnsNames: entries.filter((e) => e.startsWith('DNS:')).map((e) => e.slice(4)),
    ipAddresses: entries.filter((e) => e.startsWith('IP Address:')).map((e) => normalizeIp(e.slice(11))),
    isCa: x.ca,
    fingerprint: x.fingerprint256,
  };
}

/** Whether `cert` was signed by `ca`'s key. */
export function signedBy(certPem: string, caPem: string): boolean {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

/** Splits a PEM bundle into its certificates. */
export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)?.map((c) => (c.endsWith('\n') ? c : `${c}\n`)) ?? [];
}
