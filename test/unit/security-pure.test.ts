/**
 * The pure security decisions: the auth callout's grant (namespace, account,
 * permissions, expiry) for a reviewed token, the operator's NATS URL
 * allow-list, the credential settings' validation, and which first-connect
 * failures are fatal.
 */
import { describe, expect, it } from '@jest/globals';
import { natsAuthSchema, natsTlsSchema, fatalConnectReason, natsSecurityToEnv } from '../../common/nats-security.ts';
import { decide, namespacePermissions, type CalloutPolicy } from '../../operator/authcallout/decision.ts';
import { refusedNatsUrls } from '../../operator/security/nats-url-policy.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { loadSidecarConfig } from '../../sidecar/config.ts';

const now = Date.parse('2026-12-01T12:00:00Z');
const token = (exp: number | undefined) =>
  `h.${Buffer.from(JSON.stringify(exp === undefined ? {} : { exp })).toString('base64url')}.s`;
const policy: CalloutPolicy = { audience: 'castellan', admins: ['system:serviceaccount:castellan-system:castellan'], accountPrefix: '', maxTtlMs: 0 };
const inAnHour = now / 1000 + 3600;

describe('auth callout decision', () => {
  it('grants a ServiceAccount its own namespace, as its own account, until the token expires', () => {
    const g = decide({ authenticated: true, username: 'system:serviceaccount:team-a:app', audiences: ['castellan'] }, token(inAnHour), '', policy, now);
    expect(g).toEqual({ ok: true, namespace: 'team-a', account: 'team-a', user: 'system:serviceaccount:team-a:app', exp: inAnHour, permissions: namespacePermissions('team-a', 'app') });
    // Asking for its own namespace explicitly is the same.
    expect(decide({ authenticated: true, username: 'system:serviceaccount:team-a:app' }, token(inAnHour), 'team-a', policy, now).ok).toBe(true);
  });

  it('refuses a namespace the token does not prove (a forged POD_NAMESPACE)', () => {
    const d = decide({ authenticated: true, username: 'system:serviceaccount:team-a:app' }, token(inAnHour), 'team-b', policy, now);
    expect(d).toEqual({ ok: false, reason: 'a token of namespace "team-a" cannot act for namespace "team-b"' });
  });

  it('lets the admins (the operator) act for any namespace', () => {
    const d = decide({ authenticated: true, username: 'system:serviceaccount:castellan-system:castellan' }, token(inAnHour), 'team-b', policy, now);
    expect(d.ok && d.account).toBe('team-b');
  });

  it('refuses unauthenticated, wrong-audience, non-ServiceAccount, expired and expiry-less tokens', () => {
    expect(decide({ authenticated: false, error: 'token has been invalidated' }, token(inAnHour), '', policy, now)).toEqual({
      ok: false,
      reason: 'ServiceAccount token refused by the API server: token has been invalidated',
    });
    expect(decide({ authenticated: true, username: 'system:serviceaccount:a:b', audiences: ['other'] }, token(inAnHour), '', policy, now).ok).toBe(false);
    expect(decide({ authenticated: true, username: 'alice' }, token(inAnHour), '', policy, now).ok).toBe(false);
    expect(decide({ authenticated: true, username: 'system:serviceaccount:a:b' }, token(now / 1000 - 1), '', policy, now)).toEqual({ ok: false, reason: 'ServiceAccount token has expired or has no expiry' });
    expect(decide({ authenticated: true, username: 'system:serviceaccount:a:b' }, token(undefined), '', policy, now).ok).toBe(false);
    expect(decide({ authenticated: true, username: 'system:serviceaccount:a:b' }, token(inAnHour), 'Not_A_Namespace', { ...policy, admins: ['system:serviceaccount:a:b'] }, now).ok).toBe(false);
  });

  it('caps a grant at maxTtl and names the account with the prefix', () => {
    const d = decide({ authenticated: true, username: 'system:serviceaccount:team-a:app' }, token(inAnHour), '', { ...policy, maxTtlMs: 60_000, accountPrefix: 'k8s-' }, now);
    expect(d.ok && [d.exp, d.account]).toEqual([now / 1000 + 60, 'k8s-team-a']);
  });

  it('permissions: the namespace subjects, calls only under its own identity, the account JetStream API, inbox replies and responses', () => {
    expect(namespacePermissions('team-a', 'web.v2')).toEqual({
      pub: {
        allow: ['*.obj.team-a.>', '*.q.team-a.>', '*.qwake.team-a.>', '*.rpc.*.*.*.team-a.web_v2', '*.qrpc.*.*.*.team-a.web_v2', '$JS.API.>', '_INBOX.>', '$JS.ACK.>', '$JS.FC.>'],
      },
      sub: { allow: ['*.*.team-a.>', '_INBOX.>'] },
      resp: { max: 1, ttl: 120_000_000_000 },
    });
  });

  it('an admin acting for a namespace calls as a member of it, under its own ServiceAccount name', () => {
    const d = decide({ authenticated: true, username: 'system:serviceaccount:castellan-system:castellan' }, token(inAnHour), 'team-b', policy, now);
    expect(d.ok && d.permissions.pub.allow).toContain('*.qrpc.*.*.*.team-b.castellan');
  });
});

describe('NATS URL allow-list', () => {
  const own = ['nats://nats.nats.svc:4222'];
  it('allows the operator own servers and the listed ones, compared by scheme, host and port', () => {
    expect(refusedNatsUrls(undefined, own, [])).toBeUndefined();
    expect(refusedNatsUrls(['nats://NATS.nats.svc:4222/'], own, [])).toBeUndefined();
    expect(refusedNatsUrls(['nats://other:4222'], own, ['nats://other'])).toBeUndefined();
    expect(refusedNatsUrls(['nats://evil.example:4222', 'nats://nats.nats.svc:4222'], own, [])).toMatch(/not allowed to use: nats:\/\/evil.example:4222 \(/);
    expect(refusedNatsUrls(['tls://nats.nats.svc:4222'], own, [])).toBeDefined();
    expect(refusedNatsUrls(['nats://anything:1'], own, ['*'])).toBeUndefined();
  });

  it('is an operator setting (CASTELLAN_NATS_ALLOWED_URLS)', () => {
    const c = loadOperatorConfig({}, { CASTELLAN_NATS_URL: 'nats://a:4222', CASTELLAN_NATS_ALLOWED_URLS: 'nats://b:4222,nats://c:4222' });
    expect(c.nats.allowedUrls).toEqual(['nats://b:4222', 'nats://c:4222']);
  });
});

describe('credential settings', () => {
  it('reads the SPEC variables into the sidecar and operator configs', () => {
    const env = {
      CASTELLAN_NATS_URL: 'tls://n:4222',
      CASTELLAN_NATS_CREDS: '/s/user.creds',
      CASTELLAN_NATS_TLS_CA: '/s/ca.pem',
      CASTELLAN_NATS_TLS_CERT: '/s/tls.crt',
      CASTELLAN_NATS_TLS_KEY: '/s/tls.key',
    };
    const s = loadSidecarConfig({}, env);
    expect(s.nats.auth).toEqual({ creds: '/s/user.creds' });
    expect(s.nats.tls).toEqual({ ca: '/s/ca.pem', cert: '/s/tls.crt', key: '/s/tls.key' });
    expect(loadOperatorConfig({}, env).nats.auth).toEqual({ creds: '/s/user.creds' });
    expect(natsSecurityToEnv({ auth: s.nats.auth, tls: s.nats.tls })).toEqual({
      CASTELLAN_NATS_CREDS: '/s/user.creds',
      CASTELLAN_NATS_TLS_CA: '/s/ca.pem',
      CASTELLAN_NATS_TLS_CERT: '/s/tls.crt',
      CASTELLAN_NATS_TLS_KEY: '/s/tls.key',
    });
  });

  it('refuses two methods at once, a user without password, a cert without key', () => {
    expect(natsAuthSchema.safeParse({ token: 't', creds: '/c' }).error?.issues[0]?.message).toBe('choose one NATS authentication method, not creds and token');
    expect(natsAuthSchema.safeParse({ user: 'u' }).error?.issues[0]?.message).toMatch(/CASTELLAN_NATS_PASSWORD/);
    expect(natsTlsSchema.safeParse({ cert: '/c' }).error?.issues[0]?.message).toMatch(/CASTELLAN_NATS_TLS_KEY/);
    expect(() => loadSidecarConfig({}, { CASTELLAN_NATS_URL: 'nats://n:4222', CASTELLAN_NATS_USER: 'u' })).toThrow(/nats.auth.password: required with user/);
  });

  it('tells fatal first-connect failures from servers that are not up yet', () => {
    const auth = Object.assign(new Error("'Authorization Violation'"), { name: 'AuthorizationError' });
    expect(fatalConnectReason(auth)).toMatch(/refused the credentials/);
    expect(fatalConnectReason(new Error('wrapped', { cause: Object.assign(new Error('self-signed'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }) }))).toMatch(/TLS/);
    expect(fatalConnectReason(Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' }))).toBeUndefined();
    expect(fatalConnectReason(new Error('timeout'))).toBeUndefined();
  });
});
