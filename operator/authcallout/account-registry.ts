/**
 * NATS operator mode, I/O part: signs namespace account JWTs (operator
 * signing key) and pushes them to the servers' account resolver
 * (`$SYS.REQ.CLAIMS.UPDATE`, as a system-account user). What an account
 * says is decided by accounts.ts; its key by account-keys.ts.
 *
 * Correctness rests on:
 * - `ensure(ns)` returns only after a server stored the account (the push's
 *   answer), so the callout places a user only in an account the server
 *   knows; the full resolver shares it with the other servers, and a server
 *   that has not got it yet asks them (resolver lookup) before placing a user.
 * - Pushes are idempotent and ordered per account (one at a time, the newest
 *   claims last); a push is skipped when the claims equal the last pushed
 *   ones, so each replica of the operator pushes an account once per change.
 *   Two replicas pushing the same claims push equal content.
 * - `update(grants)` re-pushes every account whose imports or exports
 *   changed, live: nats-server applies a new account JWT to the connected
 *   clients at once (an import removed stops routing at once).
 * - With `grantsFirst`, nothing is pushed before the first `update`: a
 *   replica that has not read the resources yet would otherwise push an
 *   account without its imports over a newer one. Every replica pushes its
 *   latest view after each change, so the servers converge on it.
 * - The servers may lose what was pushed (a NATS redeployed from scratch):
 *   equal claims are pushed again once `refreshMs` has passed, so a new
 *   connection recreates its account.
 */
import { encodeAccount, type Account } from '@nats-io/jwt';
import type { KeyPair } from '@nats-io/nkeys';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { deriveAccountKey } from './account-keys.ts';
import { namespaceAccount, type CallGrant } from './accounts.ts';

export const claimsUpdateSubject = '$SYS.REQ.CLAIMS.UPDATE';

export interface AccountRegistryOptions {
  /** A system-account connection (may publish `$SYS.REQ.CLAIMS.UPDATE`). */
  sys: NatsConnection;
  /** The operator signing key (`SO…` seed) that signs account JWTs; the operator JWT lists it. */
  operatorSigner: KeyPair;
  /** Public key of the callout's signing key, listed by every namespace account. */
  signingKey: string;
  /** Secret the account keys are derived from (account-keys.ts). */
  keySecret: string;
  /** Account name = accountPrefix + namespace. */
  accountPrefix: string;
  log: Logger;
  /** Answer wait for one push (default 20 s; the servers wait 60 s for the callout). */
  timeoutMs?: number;
  /** Push nothing before the first `update` (the cross-namespace grants are known). */
  grantsFirst?: boolean;
  /** How long `ensure` waits for that first `update` before it fails (default 15 s). */
  grantsWaitMs?: number;
  /** Push equal claims again after this long (default 60 s). */
  refreshMs?: number;
  now?: () => number;
}

interface Entry {
  pushed?: string;
  pushedAt: number;
  chain: Promise<void>;
}

export class AccountRegistry {
  private readonly entries = new Map<string, Entry>();
  private grants: readonly CallGrant[] = [];
  private readonly keys = new Map<string, string>();

  private readonly opts: AccountRegistryOptions;
  private readonly known: Promise<void>;
  private grantsKnown: boolean;
  private markKnown: () => void = () => undefined;

  constructor(opts: AccountRegistryOptions) {
    this.opts = opts;
    this.grantsKnown = opts.grantsFirst !== true;
    this.known = this.grantsKnown ? Promise.resolve() : new Promise((resolve) => (this.markKnown = resolve));
  }

  /** The public key of namespace `ns`'s account. */
  accountOf(ns: string): string {
    let k = this.keys.get(ns);
    if (k === undefined) {
      k = deriveAccountKey(this.opts.keySecret, this.opts.accountPrefix + ns).getPublicKey();
      this.keys.set(ns, k);
    }
    return k;
  }

  /** Makes sure the servers know namespace `ns`'s account as the current grants say; resolves once stored. */
  ensure(ns: string): Promise<void> {
    let e = this.entries.get(ns);
    if (e === undefined) {
      e = { chain: Promise.resolve(), pushedAt: 0 };
      this.entries.set(ns, e);
    }
    const entry = e;
    const run = entry.chain.then(() => this.whenGrantsKnown()).then(() => this.push(ns, entry));
    // The chain keeps order; a failed push fails its caller and leaves the next one to try again.
    entry.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves once the grants are known; fails after grantsWaitMs (the connection is refused, and retried by its client). */
  private whenGrantsKnown(): Promise<void> {
    if (this.grantsKnown) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the DurableObjects and ReplicatedQueues are not listed yet (is the API server reachable, are the CRDs installed?)')), this.opts.grantsWaitMs ?? 15_000);
      void this.known.then(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** New cross-namespace grants: re-pushes the accounts (already pushed, or named by a grant) whose claims change. */
  async update(grants: readonly CallGrant[]): Promise<void> {
    this.grants = grants;
    this.grantsKnown = true;
    this.markKnown();
    const changed = (ns: string) => this.entries.get(ns)?.pushed !== JSON.stringify(this.claims(ns));
    // Exporters first: an import names an account the servers should know already.
    const targets = [...new Set(grants.map((g) => g.target))].filter(changed);
    const others = [...new Set([...this.entries.keys(), ...grants.map((g) => g.caller)])].filter((ns) => !targets.includes(ns) && changed(ns));
    for (const wave of [targets, others]) {
      const results = await Promise.allSettled(wave.map((ns) => this.ensure(ns)));
      for (const r of results) if (r.status === 'rejected') this.opts.log.error('could not push a NATS account', { error: describeError(r.reason) });
    }
  }

  /** The account claims of `ns` as they would be pushed now. */
  claims(ns: string): Partial<Account> {
    return namespaceAccount({ namespace: ns, signingKey: this.opts.signingKey, accountOf: (n) => this.accountOf(n), grants: this.grants });
  }

  private async push(ns: string, entry: Entry): Promise<void> {
    const claims = this.claims(ns);
    const content = JSON.stringify(claims);
    const now = (this.opts.now ?? Date.now)();
    if (entry.pushed === content && now - entry.pushedAt < (this.opts.refreshMs ?? 60_000)) return;
    const name = this.opts.accountPrefix + ns;
    const jwt = await encodeAccount(name, this.accountOf(ns), claims, { signer: this.opts.operatorSigner });
    const m = await this.opts.sys.request(claimsUpdateSubject, new TextEncoder().encode(jwt), { timeout: this.opts.timeoutMs ?? 20_000 });
    const answer = JSON.parse(m.string()) as { error?: { code?: number; description?: string }; data?: { code?: number; message?: string } };
    if (answer.error !== undefined) throw new Error(`NATS refused account ${name}: ${answer.error.description ?? JSON.stringify(answer.error)}`);
    const changed = entry.pushed !== content;
    entry.pushed = content;
    entry.pushedAt = now;
    if (changed) this.opts.log.info('NATS account pushed', { namespace: ns, account: this.accountOf(ns), exports: claims.exports?.length ?? 0, imports: claims.imports?.length ?? 0 });
  }
}
