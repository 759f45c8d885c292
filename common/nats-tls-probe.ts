/**
 * Why a TLS connection to a NATS server fails, when nats.js cannot say: with
 * TLS 1.3 a server that rejects the client's certificate (none, or one from
 * a CA it does not trust) sends its alert after the client's handshake is
 * done, and nats.js then only reports a connect timeout. This probe does what
 * nats.js does (read INFO, upgrade to TLS with the same CA/cert/key, send
 * CONNECT and PING) and reports the TLS error, if any. I/O; used by
 * common/nats-security.ts only after a failed first connect.
 */
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface ProbeTls {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** A sentence naming the TLS failure, or undefined (TLS works, or the server did not answer). */
export function probeNatsTls(url: string, tls: ProbeTls, timeoutMs = 5_000): Promise<string | undefined> {
  let host: string;
  let port: number;
  try {
    const u = new URL(url.replace(/^[a-z]+:/, 'http:'));
    host = u.hostname.replace(/^\[|\]$/g, '');
    port = Number(u.port || '4222');
  } catch {
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    let done = false;
    const socket = tcpConnect(port, host);
    const finish = (v: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.once('error', () => finish(undefined));
    let info = '';
    const onInfo = (d: Buffer) => {
      info += d.toString('utf8');
      const nl = info.indexOf('\r\n');
      if (nl < 0) return;
      socket.off('data', onInfo);
      let parsed: { tls_required?: boolean; tls_available?: boolean } = {};
      try {
        parsed = JSON.parse(info.slice(info.indexOf('{'), nl)) as typeof parsed;
      } catch {
        finish(undefined);
        return;
      }
      if (parsed.tls_required !== true && parsed.tls_available !== true) {
        finish('the NATS server does not offer TLS, but TLS settings were given');
        return;
      }
      let secure;
      try {
        secure = tlsConnect({
          socket,
          ...(isIP(host) === 0 ? { servername: host } : {}),
          rejectUnauthorized: true,
          ...(tls.caFile === undefined ? {} : { ca: readFileSync(tls.caFile) }),
          ...(tls.certFile === undefined ? {} : { cert: readFileSync(tls.certFile) }),
          ...(tls.keyFile === undefined ? {} : { key: readFileSync(tls.keyFile) }),
        });
      } catch (err) {
        finish(`TLS settings are not usable: ${(err as Error).message}`);
        return;
      }
      secure.once('error', (err: NodeJS.ErrnoException) => {
        const alert = /tlsv\d+ alert [a-z ]+/.exec(err.message)?.[0];
        finish(`${err.code ?? 'TLS error'}: ${alert ?? err.message.split('\n')[0]}`);
      });
      secure.once('secureConnect', () => secure.write('CONNECT {"verbose":false,"pedantic":false,"tls_required":true}\r\nPING\r\n'));
      // Any answer (PONG, or -ERR about credentials) means TLS itself works.
      secure.once('data', () => finish(undefined));
    };
    socket.on('data', onInfo);
  });
}
