/**
 * `castellan nats-keys --dir DIR`: makes the keys, JWTs and nats-server
 * configuration of NATS operator mode for the Castellan auth callout
 * (docs/security.md "Operator mode"), as files a platform team installs: the
 * server lines to include, and the operator's Secret. Never overwrites: a
 * second run into the same directory would re-key every namespace.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { natsOperatorMode } from '../../local/nats-operator-mode.ts';
import { parseFlags, UsageError } from '../usage.ts';

export const help = `Usage: castellan nats-keys --dir DIR [options]

Makes a NATS operator, its signing key, the system account, the callout account (AUTH), the
callout's user, a system user that pushes account JWTs, and the default sentinel, and writes:

  DIR/nats-operator.conf      lines to include in every nats-server's configuration
  DIR/issuer.seed             the callout account's seed (CASTELLAN_AUTH_CALLOUT_ISSUER_SEED)
  DIR/callout.creds           the callout's NATS user (CASTELLAN_AUTH_CALLOUT_NATS_CREDS)
  DIR/operator-signing.seed   signs namespace accounts (CASTELLAN_AUTH_CALLOUT_OPERATOR_SIGNING_SEED)
  DIR/system.creds            pushes account JWTs (CASTELLAN_AUTH_CALLOUT_SYSTEM_CREDS)
  DIR/xkey.seed               opens the servers' encrypted requests (CASTELLAN_AUTH_CALLOUT_XKEY_SEED)

Options:
  --dir DIR             where to write (must be empty or absent)
  --resolver-dir PATH   where each nats-server keeps account JWTs (default /data/jwt)
  --callout-timeout S   seconds a server waits for the callout (default 60)
  -h, --help            show this help

Keep the seeds secret. Then:
  kubectl -n castellan-system create secret generic castellan-auth-callout \\
    --from-file=DIR/issuer.seed --from-file=DIR/callout.creds \\
    --from-file=DIR/operator-signing.seed --from-file=DIR/system.creds --from-file=DIR/xkey.seed
  helm install castellan charts/castellan --set security.authCallout.enabled=true \\
    --set security.authCallout.operatorMode=true --set security.authCallout.secretName=castellan-auth-callout \\
    --set security.natsAuth.method=serviceAccountToken`;

export async function run(argv: string[]): Promise<number | void> {
  const parsed = parseFlags(argv, { dir: { type: 'string' }, 'resolver-dir': { type: 'string' }, 'callout-timeout': { type: 'string' } }, help);
  if (parsed === undefined) return 0;
  const dir = parsed.values.dir;
  if (dir === undefined || dir === '') throw new UsageError(`--dir is required\n\n${help}`);
  const timeout = Number(parsed.values['callout-timeout'] ?? '60');
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 600) throw new UsageError('--callout-timeout must be a whole number of seconds, 1-600');
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new UsageError(`${dir} is not empty: refusing to overwrite keys (new keys re-key every namespace)`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mode = await natsOperatorMode({ calloutTimeoutSeconds: timeout });
  const files: [string, string][] = [
    ['nats-operator.conf', `${mode.serverConfig(parsed.values['resolver-dir'] ?? '/data/jwt')}\n`],
    ['issuer.seed', `${mode.issuerSeed}\n`],
    ['callout.creds', mode.calloutCreds],
    ['operator-signing.seed', `${mode.operatorSigningSeed}\n`],
    ['system.creds', mode.systemCreds],
    ['xkey.seed', `${mode.xkeySeed}\n`],
  ];
  for (const [name, content] of files) writeFileSync(join(dir, name), content, { mode: 0o600 });
  process.stdout.write(`wrote ${files.map(([n]) => n).join(', ')} to ${resolve(dir)}\n`);
}
