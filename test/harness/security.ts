/**
 * Test harness: security material made fresh per test, never checked in —
 * a CA with a server certificate for 127.0.0.1 and a client certificate
 * (openssl), a second unrelated CA with its own client certificate, nkeys,
 * and a NATS operator/account/user JWT set (@nats-io/jwt) with its creds file
 * and the nats-server operator-mode configuration that trusts it.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createAccount, createOperator, createUser, encodeAccount, encodeOperator, encodeUser, fmtCreds } from '@nats-io/jwt';

export interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed nothing the server trusts, and a client certificate from it. */
  rogueCa: string;
  rogueCert: string;
  rogueKey: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`]);
  return { cert, key };
}

function issue(dir: string, name: string, ca: { cert: string; key: string }, ext: string): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const extFile = join(dir, `${name}.ext`);
  writeFileSync(extFile, ext);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', extFile]);
  return { cert, key };
}

export function makePki(dir: string): Pki {
  const ca = makeCa(dir, 'ca');
  const server = issue(dir, 'server', ca, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  const client = issue(dir, 'client', ca, 'extendedKeyUsage=clientAuth\n');
  const rogue = makeCa(dir, 'rogue-ca');
  const rogueClient = issue(dir, 'rogue-client', rogue, 'extendedKeyUsage=clientAuth\n');
  return {
    ca: ca.cert,
    serverCert: server.cert,
    serverKey: server.key,
    clientCert: client.cert,
    clientKey: client.key,
    rogueCa: rogue.cert,
    rogueCert: rogueClient.cert,
    rogueKey: rogueClient.key,
  };
}

export interface OperatorMode {
  /** nats-server configuration lines: operator, resolver and preloaded account. */
  config: string;
  /** A creds file of a user of the account. */
  creds: string;
  /** A creds file of a user signed by an account the server does not know. */
  strangerCreds: string;
}

const dec = new TextDecoder();

export async function makeOperatorMode(dir: string): Promise<OperatorMode> {
  const operator = createOperator();
  const account = createAccount();
  const sys = createAccount();
  const user = createUser();
  const opJwt = await encodeOperator('castellan-test', operator, { system_account: sys.getPublicKey() });
  const limits = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };
  const accJwt = await encodeAccount('app', account, { limits }, { signer: operator });
  const sysJwt = await encodeAccount('SYS', sys, {}, { signer: operator });
  const userJwt = await encodeUser('sidecar', user, account);
  const creds = join(dir, 'user.creds');
  writeFileSync(creds, dec.decode(fmtCreds(userJwt, user)), { mode: 0o600 });
  const stranger = createAccount();
  const strangerUser = createUser();
  const strangerJwt = await encodeUser('stranger', strangerUser, stranger);
  const strangerCreds = join(dir, 'stranger.creds');
  writeFileSync(strangerCreds, dec.decode(fmtCreds(strangerJwt, strangerUser)), { mode: 0o600 });
  const config = [
    `operator: ${JSON.stringify(opJwt)}`,
    `system_account: ${JSON.stringify(sys.getPublicKey())}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    `  ${account.getPublicKey()}: ${JSON.stringify(accJwt)}`,
    `  ${sys.getPublicKey()}: ${JSON.stringify(sysJwt)}`,
    '}',
  ].join('\n');
  return { config, creds, strangerCreds };
}
