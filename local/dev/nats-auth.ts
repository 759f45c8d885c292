/**
 * `castellan dev`'s `nats.auth` / `nats.tls` (SPEC §4): what the embedded
 * nats-server requires, and the SPEC §1 variables its sidecars get. Without
 * them nothing changes: no credentials, plain loopback NATS.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fromSeed } from '@nats-io/nkeys';
import { natsSecurityToEnv, type NatsAuth, type NatsTls } from '../../common/nats-security.ts';
import type { NatsServerSecurity } from '../nats-cluster.ts';

/** What the embedded servers require for `nats.auth` (the schema refuses creds there). */
export function embeddedSecurity(auth: NatsAuth): NatsServerSecurity {
  if (auth.token !== undefined) return { auth: { token: auth.token } };
  if (auth.user !== undefined && auth.password !== undefined) return { auth: { user: auth.user, password: auth.password } };
  if (auth.nkeySeed !== undefined) {
    const seed = readFileSync(resolve(auth.nkeySeed), 'utf8').trim();
    return { auth: { nkeys: [fromSeed(new TextEncoder().encode(seed)).getPublicKey()] } };
  }
  return {};
}

/** The SPEC §1 variables the sidecars get for `nats.auth` / `nats.tls` (file paths made absolute). */
export function devNatsEnv(n: { auth?: NatsAuth; tls?: NatsTls }): Record<string, string> {
  const abs = <T extends Record<string, string | undefined>>(o: T | undefined, files: (keyof T)[]): T | undefined =>
    o === undefined ? undefined : (Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v !== undefined && files.includes(k) ? resolve(v) : v])) as T);
  return natsSecurityToEnv({
    ...(n.auth === undefined ? {} : { auth: abs(n.auth, ['creds', 'nkeySeed', 'serviceAccountToken']) as NatsAuth }),
    ...(n.tls === undefined ? {} : { tls: abs(n.tls, ['ca', 'cert', 'key']) as NatsTls }),
  });
}
