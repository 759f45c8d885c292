/**
 * The sidecar's Prometheus registry. Each feature registers its own metrics on
 * the registry it is handed; `/metrics` renders this one registry.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

export function createMetricsRegistry(labels: Record<string, string>): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  collectDefaultMetrics({ register: registry, prefix: 'castellan_sidecar_' });
  return registry;
}
