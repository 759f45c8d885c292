/**
 * NATS operator mode, the pure parts: the derived account keys (stable, one
 * per namespace and secret, valid nkeys encodings), the cross-namespace
 * grants read from resources, the account claims they give, the operator
 * settings that turn the mode on, and the registry's push order and retries
 * (against a stand-in for the system connection that answers like
 * nats-server; the real one in security-operator-mode.test.ts).
 */
import { describe, expect, it } from '@jest/globals';
import { decode, type Account } from '@nats-io/jwt';
import { createAccount, createOperator, fromPublic, fromSeed } from '@nats-io/nkeys';
import type { NatsConnection } from '@nats-io/transport-node';
import { logger } from '../../common/logger.ts';
import { Codec } from '@nats-io/nkeys/lib/codec.js';
import { Prefix } from '@nats-io/nkeys/lib/nkeys.js';
import { accountSeedOf, deriveAccountKey } from '../../operator/authcallout/account-keys.ts';
import { AccountRegistry } from '../../operator/authcallout/account-registry.ts';
import { callGrants, callSubjects, namespaceAccount } from '../../operator/authcallout/accounts.ts';
import { resourceAccess } from '../../operator/authcallout/grants-watch.ts';
import type { CustomResource } from '../../operator/api/resources.ts';
import { loadOperatorConfig } from '../../operator/config.ts';

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe('derived account keys', () => {
  it('encode a seed exactly as nkeys does', () => {
    for (let i = 0; i < 50; i++) {
      const raw = new Uint8Array(32).map(() => Math.floor(Math.random() * 256));
      expect(accountSeedOf(raw)).toBe(text(Codec.encodeSeed(Prefix.Account, raw)));
    }
  });

  it('are the same for the same secret and name, different otherwise, and valid account keys', () => {
    const a = deriveAccountKey('secret', 'team-a');
    expect(deriveAccountKey('secret', 'team-a').getPublicKey()).toBe(a.getPublicKey());
    expect(deriveAccountKey('secret', 'team-b').getPublicKey()).not.toBe(a.getPublicKey());
    expect(deriveAccountKey('other', 'team-a').getPublicKey()).not.toBe(a.getPublicKey());
    expect(a.getPublicKey()).toMatch(/^A[A-Z2-7]{55}$/);
    expect(text(a.getSeed())).toMatch(/^SA/);
    const again = fromSeed(a.getSeed());
    const data = new TextEncoder().encode('x');
    expect(fromPublic(again.getPublicKey()).verify(data, a.sign(data))).toBe(true);
  });
});

describe('cross-namespace grants', () => {
  const object = { appPort: 8080, template: { spec: { containers: [{ name: 'app', image: 'app:1' }] } } };
  const cr = (namespace: string, spec: Record<string, unknown>, kind = 'DurableObject'): CustomResource => ({ apiVersion: 'castellan.dev/v1alpha1', kind, metadata: { name: 'x', namespace, uid: 'u' }, spec: kind === 'DurableObject' ? { ...object, ...spec } : spec });

  it('come from spec.access.callers, with the resource prefix or the default, without duplicates or the own namespace', () => {
    const resources = [
      resourceAccess(cr('team-b', { access: { callers: [{ namespace: 'team-a', serviceAccounts: ['web'] }, { namespace: 'team-b' }] } }), 'castellan'),
      resourceAccess(cr('team-b', { access: { callers: [{ namespace: 'team-a' }] } }, 'ReplicatedQueue'), 'castellan'),
      resourceAccess(cr('team-c', { nats: { prefix: 'other' }, access: { callers: [{ namespace: 'team-a' }] } }), 'castellan'),
      resourceAccess(cr('team-d', {}), 'castellan'),
    ].flatMap((r) => (r === undefined ? [] : [r]));
    expect(callGrants(resources)).toEqual([
      { target: 'team-b', prefix: 'castellan', caller: 'team-a' },
      { target: 'team-c', prefix: 'other', caller: 'team-a' },
    ]);
  });

  it('are never read from a spec that does not parse: its prefix and callers would land in other namespaces\' account JWTs', () => {
    expect(resourceAccess(cr('team-e', { access: { callers: 'garbage' } }), 'castellan')).toBeUndefined();
    expect(resourceAccess(cr('team-e', { nats: { prefix: '>' }, access: { callers: [{ namespace: 'team-a' }] } }), 'castellan')).toBeUndefined();
    expect(resourceAccess(cr('team-e', { access: { callers: [{ namespace: '*' }] } }), 'castellan')).toBeUndefined();
    expect(resourceAccess(cr('team-e', {}, 'Other'), 'castellan')).toBeUndefined();
  });

  it('make the target export and the caller import the call subjects; nothing else is exported', () => {
    const signingKey = createAccount().getPublicKey();
    const accountOf = (ns: string) => deriveAccountKey('s', ns).getPublicKey();
    const grants = callGrants([{ namespace: 'team-b', prefix: 'castellan', callers: ['team-a'] }]);
    const b = namespaceAccount({ namespace: 'team-b', signingKey, accountOf, grants });
    expect(b.exports).toEqual(callSubjects('team-b', 'castellan').map((subject) => ({ name: subject, subject, type: 'service', response_type: 'Singleton' })));
    expect(b.imports).toBeUndefined();
    const a = namespaceAccount({ namespace: 'team-a', signingKey, accountOf, grants });
    expect(a.imports).toEqual(['castellan.rpc.team-b.>', 'castellan.qrpc.team-b.>'].map((subject) => ({ name: subject, subject, account: accountOf('team-b'), type: 'service' })));
    expect(a.exports).toBeUndefined();
    const c = namespaceAccount({ namespace: 'team-c', signingKey, accountOf, grants });
    expect([c.exports, c.imports]).toEqual([undefined, undefined]);
    // Users are issued by the callout's key; JetStream is on.
    expect(c.signing_keys).toEqual([signingKey]);
    expect(c.limits).toMatchObject({ conn: -1, disk_storage: -1, mem_storage: -1, streams: -1, consumer: -1 });
    // Deterministic: equal inputs, equal claims (the registry pushes only changes).
    expect(JSON.stringify(namespaceAccount({ namespace: 'team-a', signingKey, accountOf, grants }))).toBe(JSON.stringify(a));
  });
});

describe('operator mode settings', () => {
  const base = { nats: { urls: ['nats://127.0.0.1:4222'] }, sidecar: { image: 'x' } };
  it('turn on with the operator signing key and system creds, which go together', () => {
    const env = {
      CASTELLAN_AUTH_CALLOUT: 'true',
      CASTELLAN_AUTH_CALLOUT_ISSUER_SEED: '/keys/issuer.nk',
      CASTELLAN_AUTH_CALLOUT_OPERATOR_SIGNING_SEED: '/keys/signing.nk',
      CASTELLAN_AUTH_CALLOUT_SYSTEM_CREDS: '/keys/sys.creds',
    };
    expect(loadOperatorConfig(base, env).authCallout).toMatchObject({ operatorSigningSeed: '/keys/signing.nk', systemCreds: '/keys/sys.creds' });
    expect(() => loadOperatorConfig(base, { ...env, CASTELLAN_AUTH_CALLOUT_SYSTEM_CREDS: undefined })).toThrow(/CASTELLAN_AUTH_CALLOUT_SYSTEM_CREDS/);
    expect(() => loadOperatorConfig(base, { ...env, CASTELLAN_AUTH_CALLOUT_OPERATOR_SIGNING_SEED: undefined })).toThrow(/operatorSigningSeed|OPERATOR_SIGNING_SEED/);
  });
});

describe('account registry', () => {
  /** A stand-in for the system connection: records pushed account JWTs, answers like nats-server. */
  function fakeSys(answer: (jwt: string) => unknown = () => ({ data: { code: 200 } })) {
    const pushed: { name: string; imports: number; exports: number }[] = [];
    const sys = {
      request: async (_subject: string, data: Uint8Array) => {
        const jwt = new TextDecoder().decode(data);
        const claims = decode<Account>(jwt);
        pushed.push({ name: claims.name, imports: claims.nats.imports?.length ?? 0, exports: claims.nats.exports?.length ?? 0 });
        const body = JSON.stringify(answer(jwt));
        return { string: () => body };
      },
    } as unknown as NatsConnection;
    return { sys, pushed };
  }
  const signer = createOperator();
  const base = (sys: NatsConnection, extra: Partial<ConstructorParameters<typeof AccountRegistry>[0]> = {}) =>
    new AccountRegistry({ sys, operatorSigner: signer, signingKey: createAccount().getPublicKey(), keySecret: 's', accountPrefix: '', log: logger('test.registry'), ...extra });

  it('waits for the grants before the first push, and says why when they do not come', async () => {
    const { sys, pushed } = fakeSys();
    const slow = base(sys, { grantsFirst: true, grantsWaitMs: 50 });
    await expect(slow.ensure('team-a')).rejects.toThrow(/not listed yet/);
    const r = base(sys, { grantsFirst: true });
    const first = r.ensure('team-a');
    await new Promise((res) => setTimeout(res, 20));
    expect(pushed).toEqual([]);
    await r.update([]);
    await first;
    expect(pushed).toEqual([{ name: 'team-a', imports: 0, exports: 0 }]);
  });

  it('pushes a change once, exporters before importers, and equal claims again only after refreshMs', async () => {
    const { sys, pushed } = fakeSys();
    let now = 0;
    const r = base(sys, { now: () => now, refreshMs: 1_000 });
    await r.ensure('team-a');
    await r.ensure('team-a');
    expect(pushed.length).toBe(1);
    await r.update([{ target: 'team-b', prefix: 'castellan', caller: 'team-a' }]);
    expect(pushed.slice(1)).toEqual([
      { name: 'team-b', imports: 0, exports: 2 },
      { name: 'team-a', imports: 2, exports: 0 },
    ]);
    await r.update([{ target: 'team-b', prefix: 'castellan', caller: 'team-a' }]);
    expect(pushed.length).toBe(3);
    now = 1_500;
    await r.ensure('team-a');
    expect(pushed.length).toBe(4);
  });

  it('fails a push NATS refuses, and tries again on the next connection', async () => {
    let refuse = true;
    const { sys, pushed } = fakeSys(() => (refuse ? { error: { code: 400, description: 'jwt has expired' } } : { data: { code: 200 } }));
    const r = base(sys);
    await expect(r.ensure('team-a')).rejects.toThrow(/NATS refused account team-a: jwt has expired/);
    refuse = false;
    await r.ensure('team-a');
    expect(pushed.length).toBe(2);
  });
});
