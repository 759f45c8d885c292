/**
 * Prometheus metrics of durable objects, registered on the sidecar's registry.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ObjectMetrics {
  requests: Counter<'class' | 'outcome'>;
  latency: Histogram<'class'>;
  forwards: Counter<'class' | 'kind'>;
  activeObjects: Gauge<'class'>;
  failovers: Counter<'class'>;
  claims: Counter<'class' | 'result'>;
  queueDepth: Gauge<'class'>;
  queueDepthMax: Gauge<'class'>;
  stuck: Counter<'class'>;
  stuckObjects: Gauge<'class'>;
  streamReplicas: Gauge<'class'>;
  streamReplicasRequested: Gauge<'class'>;
}

export function createObjectMetrics(registry: Registry): ObjectMetrics {
  const registers = [registry];
  return {
    requests: new Counter({
      name: 'castellan_object_requests_total',
      help: 'Object invocations received by this sidecar (caller side), by class and outcome (HTTP status class or error code).',
      labelNames: ['class', 'outcome'],
      registers,
    }),
    latency: new Histogram({
      name: 'castellan_object_request_duration_seconds',
      help: 'End-to-end latency of object invocations at the caller sidecar.',
      labelNames: ['class'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    forwards: new Counter({
      name: 'castellan_object_forwards_total',
      help: 'Requests the caller side sent to an object host, by kind: first, redirect, retry (over NATS), local (to this sidecar\'s own host, in process).',
      labelNames: ['class', 'kind'],
      registers,
    }),
    activeObjects: new Gauge({
      name: 'castellan_object_active',
      help: 'Objects activated (owned) on this host.',
      labelNames: ['class'],
      registers,
    }),
    failovers: new Counter({
      name: 'castellan_object_failovers_total',
      help: 'Objects this host took over from a dead or fenced host.',
      labelNames: ['class'],
      registers,
    }),
    claims: new Counter({
      name: 'castellan_object_claims_total',
      help: 'Ownership claims by this host, by result.',
      labelNames: ['class', 'result'],
      registers,
    }),
    queueDepth: new Gauge({
      name: 'castellan_object_queue_depth',
      help: 'Requests queued or running, summed over the objects of this host.',
      labelNames: ['class'],
      registers,
    }),
    queueDepthMax: new Gauge({
      name: 'castellan_object_queue_depth_max',
      help: 'Deepest per-object queue on this host right now.',
      labelNames: ['class'],
      registers,
    }),
    stuck: new Counter({
      name: 'castellan_object_stuck_total',
      help: 'Requests that ran in the app past turnTimeout, marking their object stuck.',
      labelNames: ['class'],
      registers,
    }),
    streamReplicas: new Gauge({
      name: 'castellan_object_stream_replicas',
      help: 'Replicas the class stream has (fewer than requested while the cluster could not place them; raised when it can).',
      labelNames: ['class'],
      registers,
    }),
    streamReplicasRequested: new Gauge({
      name: 'castellan_object_stream_replicas_requested',
      help: 'Replicas requested for the class stream (storage.replicas).',
      labelNames: ['class'],
      registers,
    }),
    stuckObjects: new Gauge({
      name: 'castellan_object_stuck',
      help: 'Objects of this host stuck right now (a request running in the app past turnTimeout).',
      labelNames: ['class'],
      registers,
    }),
  };
}
