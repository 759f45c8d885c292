/**
 * The operator's Prometheus metrics (served on /metrics).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface OperatorMetrics {
  registry: Registry;
  reconciles: Counter<'kind' | 'result'>;
  reconcileSeconds: Histogram<'kind'>;
  queueDepth: Gauge;
  leader: Gauge;
  watchRestarts: Counter<'informer'>;
  managed: Gauge<'kind'>;
  /** Per-resource numbers read over NATS by `observe` (operator/reconcile/kinds.ts), by status field. */
  observed: Gauge<'kind' | 'namespace' | 'name' | 'field'>;
}

export function createOperatorMetrics(): OperatorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'castellan_operator_' });
  return {
    registry,
    reconciles: new Counter({ name: 'castellan_operator_reconciles_total', help: 'Reconciles by kind and result (success, error, requeue)', labelNames: ['kind', 'result'], registers: [registry] }),
    reconcileSeconds: new Histogram({
      name: 'castellan_operator_reconcile_duration_seconds',
      help: 'Time spent in one reconcile',
      labelNames: ['kind'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    queueDepth: new Gauge({ name: 'castellan_operator_workqueue_depth', help: 'Keys waiting in the work queue', registers: [registry] }),
    leader: new Gauge({ name: 'castellan_operator_leader', help: '1 while this replica holds the leader lease (or runs without election)', registers: [registry] }),
    watchRestarts: new Counter({ name: 'castellan_operator_watch_restarts_total', help: 'Watches restarted after an error', labelNames: ['informer'], registers: [registry] }),
    managed: new Gauge({ name: 'castellan_operator_resources', help: 'Custom resources in the informer cache', labelNames: ['kind'], registers: [registry] }),
    observed: new Gauge({
      name: 'castellan_operator_observed',
      help: 'Numbers the operator reads from the data plane per resource, by status field (DurableObject: approximateObjects, storedBytes; ReplicatedQueue: approximateMessages)',
      labelNames: ['kind', 'namespace', 'name', 'field'],
      registers: [registry],
    }),
  };
}
