/**
 * How every Castellan process authenticates to NATS and checks its TLS: the
 * one schema (SPEC §1 names: CASTELLAN_NATS_CREDS, CASTELLAN_NATS_NKEY_SEED,
 * CASTELLAN_NATS_USER + CASTELLAN_NATS_PASSWORD, CASTELLAN_NATS_TOKEN,
 * CASTELLAN_NATS_TLS_CA, CASTELLAN_NATS_TLS_CERT + CASTELLAN_NATS_TLS_KEY; the
 * extension CASTELLAN_NATS_SA_TOKEN for the auth callout, docs/security.md),
 * the one builder of nats.js connection options, and the one first-connect
 * loop that tells a wrong credential or certificate (fatal, said at once)
 * from a server that is not up yet (waited for). Used by the sidecar, the
 * operator and `castellan dev`.
 *
 * Files (creds, seeds, tokens, certificates) are read again on every
 * (re)connect, so a rotated Secret or projected token is picked up without a
 * restart; they are also read once up front, so a missing file is a start-up
 * error naming the variable. Secrets never appear in logs or errors.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
  type Authenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/transport-node';
import type { EnvMap } from './config.ts';
import { describeError, type Logger } from './logger.ts';
import { sleep } from './net.ts';
import { probeNatsTls } from './nats-tls-probe.ts';

const file = z.string().min(1, 'expected a file path');

export const natsAuthSchema = z
  .object({
    /** A NATS credentials file (user JWT + nkey seed). */
    creds: file.optional(),
    /** A file holding an nkey user seed (`SU…`). */
    nkeySeed: file.optional(),
    user: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    token: z.string().min(1).optional(),
    /** Extension: a projected Kubernetes ServiceAccount token file, presented to the Castellan auth callout. */
    serviceAccountToken: file.optional(),
  })
  .strict()
  .superRefine((a, ctx) => {
    const methods = [a.creds && 'creds', a.nkeySeed && 'nkeySeed', (a.user ?? a.password) && 'user+password', a.token && 'token', a.serviceAccountToken && 'serviceAccountToken'].filter(Boolean);
    if (methods.length > 1) ctx.addIssue({ code: 'custom', message: `choose one NATS authentication method, not ${methods.join(' and ')}` });
    if (a.user !== undefined && a.password === undefined) ctx.addIssue({ code: 'custom', path: ['password'], message: 'required with user (CASTELLAN_NATS_PASSWORD)' });
    if (a.password !== undefined && a.user === undefined) ctx.addIssue({ code: 'custom', path: ['user'], message: 'required with password (CASTELLAN_NATS_USER)' });
  });

export const natsTlsSchema = z
  .object({
    /** CA bundle that signed the servers' certificates (default: the system CAs). */
    ca: file.optional(),
    /** Client certificate and key for mutual TLS. */
    cert: file.optional(),
    key: file.optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.cert !== undefined && t.key === undefined) ctx.addIssue({ code: 'custom', path: ['key'], message: 'required with cert (CASTELLAN_NATS_TLS_KEY)' });
    if (t.key !== undefined && t.cert === undefined) ctx.addIssue({ code: 'custom', path: ['cert'], message: 'required with key (CASTELLAN_NATS_TLS_CERT)' });
  });

/** Fields to spread into a config's `nats` object. */
export const natsSecurityShape = {
  auth: natsAuthSchema.prefault({}),
  tls: natsTlsSchema.prefault({}),
};

export type NatsAuth = z.infer<typeof natsAuthSchema>;
export type NatsTls = z.infer<typeof natsTlsSchema>;
export interface NatsSecurity {
  auth: NatsAuth;
  tls: NatsTls;
}

/** SPEC §1 environment variables, mapped below a config's `nats` object. */
export const natsSecurityEnv: EnvMap = {
  CASTELLAN_NATS_CREDS: 'nats.auth.creds',
  CASTELLAN_NATS_NKEY_SEED: 'nats.auth.nkeySeed',
  CASTELLAN_NATS_USER: 'nats.auth.user',
  CASTELLAN_NATS_PASSWORD: 'nats.auth.password',
  CASTELLAN_NATS_TOKEN: 'nats.auth.token',
  CASTELLAN_NATS_SA_TOKEN: 'nats.auth.serviceAccountToken',
  CASTELLAN_NATS_TLS_CA: 'nats.tls.ca',
  CASTELLAN_NATS_TLS_CERT: 'nats.tls.cert',
  CASTELLAN_NATS_TLS_KEY: 'nats.tls.key',
};

/** The environment a child process needs to connect as this configuration does (castellan dev → its sidecars). */
export function natsSecurityToEnv(s: Partial<NatsSecurity>): Record<string, string> {
  const out: Record<string, string> = {};
  const flat: Record<string, string | undefined> = {
    'nats.auth.creds': s.auth?.creds,
    'nats.auth.nkeySeed': s.auth?.nkeySeed,
    'nats.auth.user': s.auth?.user,
    'nats.auth.password': s.auth?.password,
    'nats.auth.token': s.auth?.token,
    'nats.auth.serviceAccountToken': s.auth?.serviceAccountToken,
    'nats.tls.ca': s.tls?.ca,
    'nats.tls.cert': s.tls?.cert,
    'nats.tls.key': s.tls?.key,
  };
  for (const [name, path] of Object.entries(natsSecurityEnv)) {
    const v = flat[path];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** A NATS connection that can never succeed as configured: said once, at start-up, then the process stops. */
export class NatsStartupError extends Error {
  readonly fatal = true;
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'NatsStartupError';
  }
}

function envName(path: string): string {
  return Object.entries(natsSecurityEnv).find(([, p]) => p === path)?.[0] ?? path;
}

function readable(path: string, setting: string): void {
  try {
    accessSync(path, constants.R_OK);
  } catch (err) {
    throw new NatsStartupError(`cannot read ${envName(setting)} file ${path}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`);
  }
}

function readText(path: string): string {
  return readFileSync(path, 'utf8').trim();
}

export interface BuildOptions {
  /**
   * With a ServiceAccount token: the namespace to ask the auth callout for
   * (a sidecar's own namespace; the operator's per-namespace connections).
   */
  namespace?: string;
}

/**
 * The authentication and TLS part of nats.js ConnectionOptions. Checks every
 * file is readable now; authenticators read them again on each connect.
 */
export function natsSecurityOptions(s: Partial<NatsSecurity> | undefined, opts: BuildOptions = {}): Pick<ConnectionOptions, 'authenticator' | 'tls'> {
  const out: Pick<ConnectionOptions, 'authenticator' | 'tls'> = {};
  const a = s?.auth ?? {};
  let auth: Authenticator | undefined;
  if (a.creds !== undefined) {
    readable(a.creds, 'nats.auth.creds');
    const creds = a.creds;
    auth = credsAuthenticator(() => readFileSync(creds));
  } else if (a.nkeySeed !== undefined) {
    readable(a.nkeySeed, 'nats.auth.nkeySeed');
    const seed = a.nkeySeed;
    auth = nkeyAuthenticator(() => new TextEncoder().encode(readText(seed)));
  } else if (a.user !== undefined && a.password !== undefined) {
    auth = usernamePasswordAuthenticator(a.user, a.password);
  } else if (a.token !== undefined) {
    auth = tokenAuthenticator(a.token);
  } else if (a.serviceAccountToken !== undefined) {
    readable(a.serviceAccountToken, 'nats.auth.serviceAccountToken');
    const tokenFile = a.serviceAccountToken;
    // The auth callout reads the token from the password and the namespace asked for from the user name.
    auth = usernamePasswordAuthenticator(opts.namespace ?? '', () => readText(tokenFile));
  }
  if (auth !== undefined) out.authenticator = auth;
  const t = s?.tls ?? {};
  if (t.ca !== undefined || t.cert !== undefined) {
    if (t.ca !== undefined) readable(t.ca, 'nats.tls.ca');
    if (t.cert !== undefined) readable(t.cert, 'nats.tls.cert');
    if (t.key !== undefined) readable(t.key, 'nats.tls.key');
    out.tls = {
      ...(t.ca === undefined ? {} : { caFile: t.ca }),
      ...(t.cert === undefined ? {} : { certFile: t.cert }),
      ...(t.key === undefined ? {} : { keyFile: t.key }),
    };
  }
  return out;
}

/** Node's TLS error codes (and the server's alerts) that no retry can fix. */
const tlsCodes = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|CERT_|HOSTNAME_MISMATCH|ERR_OSSL_)/;

/**
 * Why a first connect failed, if no retry can fix it: the server refused the
 * credentials, a certificate does not verify, the server requires TLS the
 * client was not given (or the reverse). Undefined for "not reachable yet".
 */
export function fatalConnectReason(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const x = e as { name?: unknown; code?: unknown; message?: unknown };
    const message = typeof x.message === 'string' ? x.message : '';
    const code = typeof x.code === 'string' ? x.code : '';
    if (x.name === 'AuthorizationError' || /authorization violation|authentication (expired|revoked)|user authentication/i.test(message)) {
      return `NATS refused the credentials (${message || 'authorization violation'})`;
    }
    if (tlsCodes.test(code)) return `TLS with the NATS server failed: ${code}${message ? ` (${message})` : ''}`;
    if (/\btls\b.*(required|not available|is not available)|certificate|ssl|handshake/i.test(message)) return `TLS with the NATS server failed: ${message}`;
  }
  return undefined;
}

export interface CheckedConnectOptions {
  /** Called for each attempt that failed on something a retry may fix. */
  log: Logger;
  /** Give up waiting for an unreachable server after this long (default: never). */
  waitMs?: number;
  /** Pause between attempts (default 500 ms). */
  retryMs?: number;
  signal?: AbortSignal;
}

/**
 * Connects, waiting for servers that are not up yet, but throwing a
 * NatsStartupError at once when the servers answer and refuse us (wrong
 * credentials, untrusted or missing certificates). After the first connect,
 * nats.js reconnects as `opts` say.
 */
export async function connectChecked(opts: ConnectionOptions, c: CheckedConnectOptions): Promise<NatsConnection> {
  const deadline = c.waitMs === undefined ? Infinity : Date.now() + c.waitMs;
  let warned = false;
  for (;;) {
    try {
      return await connect({ ...opts, waitOnFirstConnect: false });
    } catch (err) {
      const servers = Array.isArray(opts.servers) ? opts.servers.join(',') : String(opts.servers ?? '');
      let fatal = fatalConnectReason(err);
      if (fatal === undefined && typeof opts.tls === 'object' && opts.tls !== null) {
        // nats.js reports a client certificate the server rejected as a timeout: ask the server directly.
        const first = servers.split(',')[0] ?? '';
        const why = await probeNatsTls(first.includes('://') ? first : `nats://${first}`, opts.tls);
        if (why !== undefined) fatal = `TLS with the NATS server failed: ${why}`;
      }
      if (fatal !== undefined) throw new NatsStartupError(`cannot connect to NATS (${servers}): ${fatal}`, err);
      if (Date.now() >= deadline) throw err;
      if (c.signal?.aborted === true) throw err;
      if (!warned) c.log.warn('NATS not reachable yet; waiting', { servers, error: describeError(err) });
      warned = true;
      await sleep(c.retryMs ?? 500);
    }
  }
}
