/**
 * `castellan operator`: runs the operator (operator/operator.ts) until
 * SIGTERM/SIGINT; a leader that loses its Lease exits with code 1 so that a
 * fresh start re-joins the election cleanly (as client-go's leaders do).
 */
import * as k8s from '@kubernetes/client-node';
import { ConfigError } from '../../common/config.ts';
import { describeError, logger } from '../../common/logger.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { Operator } from '../../operator/operator.ts';
import { runUntilSignal } from '../signals.ts';
import { parseFlags } from '../usage.ts';

const help = `Usage: castellan operator [options]

Runs the Castellan operator: reconciles DurableObject and ReplicatedQueue resources
(castellan.dev/v1alpha1) into StatefulSets with the sidecar, Services, PodDisruptionBudgets,
ConfigMaps and JetStream assets. Kubernetes access: KUBECONFIG, --kubeconfig or in-cluster.
Every option can also be set by environment variable.

Options:
  --kubeconfig FILE        kubeconfig file                        (KUBECONFIG; default ~/.kube/config or in-cluster)
  --nats URLS              NATS servers, comma-separated          (CASTELLAN_NATS_URL, required)
  --nats-prefix P          subject/stream prefix                  (CASTELLAN_NATS_PREFIX, default castellan)
  --namespaces NS,...      watch only these namespaces            (CASTELLAN_WATCH_NAMESPACES, default all)
  --sidecar-image IMAGE    image of the sidecar added to pods     (CASTELLAN_SIDECAR_IMAGE)
  --host HOST              HTTP address of /healthz /readyz /metrics (CASTELLAN_OPERATOR_HOST, default 127.0.0.1)
  --port PORT              HTTP port, 0 = any free port           (CASTELLAN_OPERATOR_PORT, default 8080)
  --leader-elect           elect a leader on a Lease (default)    (CASTELLAN_LEADER_ELECT=true)
  --no-leader-elect        act without leader election (one replica only)
  --lease-namespace NS     namespace of the Lease                 (CASTELLAN_LEADER_ELECTION_NAMESPACE, default POD_NAMESPACE or default)
  --lease-name NAME        name of the Lease                      (CASTELLAN_LEADER_ELECTION_LEASE, default castellan-operator)
  --lease-duration D       lease validity without renewal         (CASTELLAN_LEADER_ELECTION_LEASE_DURATION, default 15s)
  --renew-deadline D       a leader that cannot renew this long stops (CASTELLAN_LEADER_ELECTION_RENEW_DEADLINE, default 10s)
  --retry-period D         election retry period                  (CASTELLAN_LEADER_ELECTION_RETRY_PERIOD, default 2s)
  --identity ID            leader-election identity               (POD_NAME, default hostname-pid)
  --webhook                serve the sidecar-injection admission webhook (CASTELLAN_WEBHOOK_ENABLED; docs/webhook.md)
  --webhook-host HOST      HTTPS address of the webhook           (CASTELLAN_WEBHOOK_HOST, default 127.0.0.1)
  --webhook-port PORT      HTTPS port of the webhook              (CASTELLAN_WEBHOOK_PORT, default 9443)
                           certificates: CASTELLAN_WEBHOOK_CERTIFICATES (operator|cert-manager), _SECRET, _CONFIGURATION,
                           _DNS_NAMES, _IP_ADDRESSES, _CA_VALIDITY, _CERT_VALIDITY, _CHECK_INTERVAL; injected sidecars:
                           CASTELLAN_WEBHOOK_SIDECAR_RESOURCES (JSON), CASTELLAN_WEBHOOK_ALLOW_NATS_OVERRIDE
  --workers N              parallel reconciles                    (CASTELLAN_OPERATOR_WORKERS, default 4)
  --resync D               reconcile everything at least this often (CASTELLAN_OPERATOR_RESYNC, default 5m)
  -h, --help               show this help`;

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(
    argv,
    {
      kubeconfig: { type: 'string' },
      nats: { type: 'string' },
      'nats-prefix': { type: 'string' },
      namespaces: { type: 'string' },
      'sidecar-image': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'leader-elect': { type: 'boolean' },
      'no-leader-elect': { type: 'boolean' },
      'lease-namespace': { type: 'string' },
      'lease-name': { type: 'string' },
      'lease-duration': { type: 'string' },
      'renew-deadline': { type: 'string' },
      'retry-period': { type: 'string' },
      identity: { type: 'string' },
      workers: { type: 'string' },
      resync: { type: 'string' },
      webhook: { type: 'boolean' },
      'webhook-host': { type: 'string' },
      'webhook-port': { type: 'string' },
    },
    help,
  );
  if (flags === undefined) return 0;
  const v = flags.values;
  const config = loadOperatorConfig(withoutUndefined({
    identity: v.identity,
    kubeconfig: v.kubeconfig,
    nats: { urls: v.nats, prefix: v['nats-prefix'] },
    namespaces: v.namespaces,
    http: { host: v.host, port: v.port },
    sidecar: { image: v['sidecar-image'] },
    leaderElection: {
      enabled: v['no-leader-elect'] === true ? false : v['leader-elect'] === true ? true : undefined,
      namespace: v['lease-namespace'],
      lease: v['lease-name'],
      leaseDuration: v['lease-duration'],
      renewDeadline: v['renew-deadline'],
      retryPeriod: v['retry-period'],
    },
    workers: v.workers,
    resyncPeriod: v.resync,
    webhook: { enabled: v.webhook, host: v['webhook-host'], port: v['webhook-port'] },
  }));
  const kc = new k8s.KubeConfig();
  try {
    if (config.kubeconfig !== undefined) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new ConfigError('kubeconfig', [describeError(err)]);
  }
  if (kc.getCurrentCluster() === null) throw new ConfigError('kubeconfig', ['no current cluster: set KUBECONFIG or run in a pod']);

  const log = logger('operator');
  let lost: (code: number) => void = () => undefined;
  const lostLeadership = new Promise<number>((resolve) => (lost = resolve));
  const operator = new Operator({ config, kc, log, onLostLeadership: () => lost(1) });
  await operator.start();
  const outcome = await Promise.race([
    runUntilSignal(() => operator.stop(), log, 'stopping').then((code) => ({ code, lost: false })),
    lostLeadership.then((code) => ({ code, lost: true })),
  ]);
  if (outcome.lost) await operator.stop().catch((err: unknown) => log.error('error while stopping', { error: describeError(err) }));
  // Whatever handle a library may still hold, a stopped operator exits.
  setTimeout(() => process.exit(outcome.code), 3_000).unref();
  return outcome.code;
}

/** Drops unset flags (at any depth), so that they do not hide the environment or the defaults. */
function withoutUndefined(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined) continue;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const inner = withoutUndefined(v as Record<string, unknown>);
      if (Object.keys(inner).length > 0) out[k] = inner;
    } else out[k] = v;
  }
  return out;
}
