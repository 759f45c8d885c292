/**
 * Prometheus metrics of replicated queues, registered on the sidecar's registry.
 * Counters are per queue; host gauges describe the copies this host holds.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface QueueMetrics {
  sent: Counter<'queue'>;
  received: Counter<'queue'>;
  redelivered: Counter<'queue'>;
  deleted: Counter<'queue'>;
  promoted: Counter<'queue'>;
  deadLettered: Counter<'queue'>;
  replication: Histogram<'queue'>;
  replicationFailures: Counter<'queue'>;
  requests: Counter<'queue' | 'op' | 'outcome'>;
  hostRequests: Counter<'queue' | 'op' | 'result'>;
  depth: Gauge<'queue' | 'state'>;
  stored: Gauge<'queue'>;
  oldestAge: Gauge<'queue'>;
  indexBytes: Gauge<'queue'>;
}

export function createQueueMetrics(registry: Registry): QueueMetrics {
  const registers = [registry];
  const counter = (name: string, help: string) => new Counter({ name, help, labelNames: ['queue'], registers });
  return {
    sent: counter('castellan_queue_sent_total', 'Messages enqueued (acknowledged with 201) by this queue host as primary.'),
    received: counter('castellan_queue_received_total', 'Message deliveries by this queue host.'),
    redelivered: counter('castellan_queue_redelivered_total', 'Deliveries of a message received before (receive count > 1).'),
    deleted: counter('castellan_queue_deleted_total', 'Replicas deleted on this queue host.'),
    promoted: counter('castellan_queue_promoted_total', 'Dead queue host sessions this host took over (death records it wrote; each moves all of that session’s messages).'),
    deadLettered: counter('castellan_queue_dead_lettered_total', 'Messages this host moved to the dead-letter queue.'),
    replication: new Histogram({
      name: 'castellan_queue_replication_seconds',
      help: 'Time to store one standby replica on another host (request/reply incl. its JetStream write).',
      labelNames: ['queue'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    replicationFailures: counter('castellan_queue_replication_failures_total', 'Replication requests that failed (retried on another host).'),
    hostRequests: new Counter({
      name: 'castellan_queue_host_requests_total',
      help: 'Requests this queue host answered from sidecars and peer hosts, by operation and result (ok, empty: a receive that found nothing, error).',
      labelNames: ['queue', 'op', 'result'],
      registers,
    }),
    requests: new Counter({
      name: 'castellan_queue_requests_total',
      help: 'Queue API requests served by this sidecar, by operation and outcome (HTTP status).',
      labelNames: ['queue', 'op', 'outcome'],
      registers,
    }),
    depth: new Gauge({ name: 'castellan_queue_messages', help: 'Messages whose visible copy this host holds, by state (visible, in_flight, delayed).', labelNames: ['queue', 'state'], registers }),
    stored: new Gauge({ name: 'castellan_queue_replicas_stored', help: 'Replicas stored on this host (visible copies and standbys).', labelNames: ['queue'], registers }),
    indexBytes: new Gauge({ name: 'castellan_queue_index_bytes', help: 'Bytes of the typed arrays of this host\'s in-memory index of its stored replicas (no bodies).', labelNames: ['queue'], registers }),
    oldestAge: new Gauge({ name: 'castellan_queue_oldest_message_age_seconds', help: 'Age of the oldest message this host holds.', labelNames: ['queue'], registers }),
  };
}
