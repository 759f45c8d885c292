/**
 * Who may call what (common/access.ts): the decision, the identity a call
 * subject carries, and the policy's env form.
 */
import { describe, expect, it } from '@jest/globals';
import { decideAccess, foreignNamespaceRefusal, formatAccessCallers, identityFromSubject, identityTokens, parseAccessCallers, serviceAccountOfToken, type AccessPolicy } from '../../common/access.ts';
import { CastellanError } from '../../common/errors.ts';
import { classNames } from '../../sidecar/objects/subjects.ts';
import { queueNames } from '../../sidecar/queues/names.ts';
import { loadSidecarConfig } from '../../sidecar/config.ts';

const policy: AccessPolicy = {
  namespace: 'team-b',
  callers: [{ namespace: 'team-a', serviceAccounts: ['web', 'api.v2'] }, { namespace: 'ops' }],
};

describe('access decision', () => {
  it('allows the own namespace, every ServiceAccount of it, whatever the list says', () => {
    expect(decideAccess(policy, { namespace: 'team-b', serviceAccount: 'anything' }, 'DurableObject', 'counter')).toBe(true);
    expect(decideAccess({ namespace: 'team-b', callers: [] }, { namespace: 'team-b', serviceAccount: 'default' }, 'ReplicatedQueue', 'jobs')).toBe(true);
  });

  it('allows a listed namespace: only the listed ServiceAccounts, or all of them when none are listed', () => {
    expect(decideAccess(policy, { namespace: 'team-a', serviceAccount: 'web' }, 'DurableObject', 'counter')).toBe(true);
    expect(decideAccess(policy, { namespace: 'team-a', serviceAccount: 'api.v2' }, 'DurableObject', 'counter')).toBe(true);
    expect(decideAccess(policy, { namespace: 'ops', serviceAccount: 'whoever' }, 'DurableObject', 'counter')).toBe(true);
  });

  it('refuses everything else with 403 FORBIDDEN naming the caller and the resource (default: own namespace only)', () => {
    const e = decideAccess(policy, { namespace: 'team-a', serviceAccount: 'batch' }, 'DurableObject', 'counter');
    expect(e).toBeInstanceOf(CastellanError);
    const err = e as CastellanError;
    expect([err.status, err.code, err.retryable]).toEqual([403, 'FORBIDDEN', false]);
    expect(err.message).toContain('team-a/batch');
    expect(err.message).toContain('DurableObject team-b/counter');
    expect(err.toJSON()).toEqual({ error: { code: 'FORBIDDEN', message: err.message, retryable: false } });
    const d = decideAccess({ namespace: 'team-b', callers: [] }, { namespace: 'team-a', serviceAccount: 'web' }, 'ReplicatedQueue', 'jobs');
    expect(d !== true && [d.status, d.code]).toEqual([403, 'FORBIDDEN']);
    expect(d !== true && d.message).toContain('ReplicatedQueue team-b/jobs');
  });

  it('never lets another namespace send a host-only operation (queue replication), even when listed', () => {
    const d = decideAccess(policy, { namespace: 'ops', serviceAccount: 'x' }, 'ReplicatedQueue', 'jobs', true);
    expect(d !== true && d.code).toBe('FORBIDDEN');
    expect(decideAccess(policy, { namespace: 'team-b', serviceAccount: 'x' }, 'ReplicatedQueue', 'jobs', true)).toBe(true);
  });
});

describe('caller identity in call subjects', () => {
  it('round-trips through the last two tokens; ServiceAccount dots become underscores', () => {
    const id = { namespace: 'team-a', serviceAccount: 'api.v2' };
    expect(identityTokens(id)).toBe('team-a.api_v2');
    expect(identityFromSubject(classNames('castellan', 'team-b', 'counter').rpc('counter-0', id))).toEqual(id);
    expect(identityFromSubject(classNames('castellan', 'team-b', 'counter').door(id))).toEqual(id);
    expect(identityFromSubject(queueNames('castellan', 'team-b', 'jobs').rpc('jobs-1', id))).toEqual(id);
  });

  it('refuses subjects whose last tokens are not an identity', () => {
    expect(identityFromSubject('castellan.rpc.team-b.counter.counter-0')).toEqual({ namespace: 'counter', serviceAccount: 'counter-0' });
    expect(identityFromSubject('castellan.rpc.team-b.counter.Pod.X_Y')).toBeUndefined();
    expect(identityFromSubject('x')).toBeUndefined();
    expect(identityFromSubject('a.-bad.sa')).toBeUndefined();
  });
});

describe('policy in the environment (CASTELLAN_ACCESS_CALLERS)', () => {
  it('round-trips the list; empty means none', () => {
    expect(parseAccessCallers(formatAccessCallers(policy.callers))).toEqual(policy.callers);
    expect(formatAccessCallers([])).toBe('');
    expect(formatAccessCallers(undefined)).toBe('');
    expect(parseAccessCallers('')).toEqual([]);
  });

  it('refuses what is not a list of callers, naming the field', () => {
    expect(() => parseAccessCallers('{')).toThrow(/not JSON/);
    expect(() => parseAccessCallers('[{"namespace":"Team A"}]')).toThrow(/0\.namespace: expected a namespace name/);
    expect(() => parseAccessCallers('[{"namespace":"a","serviceAccounts":[]}]')).toThrow(/serviceAccounts/);
    expect(() => parseAccessCallers('[{"namespace":"a","extra":1}]')).toThrow(/extra/);
  });

  it('is read by the sidecar with its ServiceAccount', () => {
    const c = loadSidecarConfig({}, { CASTELLAN_NATS_URL: 'nats://n:4222', CASTELLAN_SERVICE_ACCOUNT: 'web', CASTELLAN_ACCESS_CALLERS: '[{"namespace":"team-a"}]' });
    expect([c.serviceAccount, c.access.callers]).toEqual(['web', [{ namespace: 'team-a' }]]);
    expect(loadSidecarConfig({}, { CASTELLAN_NATS_URL: 'nats://n:4222' }).access.callers).toEqual([]);
    expect(() => loadSidecarConfig({}, { CASTELLAN_NATS_URL: 'nats://n:4222', CASTELLAN_ACCESS_CALLERS: '[1]' })).toThrow(/access\.callers \(from CASTELLAN_ACCESS_CALLERS\)/);
  });
});

describe('who the sidecar says it is, and what may name another namespace', () => {
  const jwt = (claims: object) => `h.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.s`;
  it('reads the ServiceAccount a projected token names', () => {
    expect(serviceAccountOfToken(jwt({ sub: 'system:serviceaccount:team-a:api.v2' }))).toBe('api.v2');
    expect(serviceAccountOfToken(`${jwt({ sub: 'system:serviceaccount:team-a:web' })}\n`)).toBe('web');
    expect(serviceAccountOfToken(jwt({ sub: 'alice' }))).toBeUndefined();
    expect(serviceAccountOfToken('garbage')).toBeUndefined();
  });

  it('refuses listing and storage requests naming another namespace (403), lets the own one through', () => {
    expect(foreignNamespaceRefusal(undefined, 'team-a', '/v1/classes/counter/objects')).toBeUndefined();
    expect(foreignNamespaceRefusal('team-a', 'team-a', '/v1/classes/counter/objects')).toBeUndefined();
    const e = foreignNamespaceRefusal('team-b', 'team-a', '/v1/classes/counter/objects');
    expect([e?.status, e?.code]).toEqual([403, 'FORBIDDEN']);
    expect(e?.message).toMatch(/^Listing, inspecting and deleting objects reach only .*"team-a".*"team-b"/);
    expect(foreignNamespaceRefusal(['team-a', 'team-b'], 'team-a', '/v1/storage/counter/x/keys/k')?.message).toMatch(/^Object storage/);
  });
});
