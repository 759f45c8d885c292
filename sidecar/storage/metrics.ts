/**
 * Prometheus metrics of object storage and alarms, on the sidecar's registry.
 */
import { Counter, Histogram, type Registry } from 'prom-client';

export interface StorageMetrics {
  ops: Counter<'class' | 'kind' | 'outcome'>;
  commits: Counter<'class' | 'outcome'>;
  commitLatency: Histogram<'class'>;
  batchWrites: Histogram<'class'>;
  objectBytes: Histogram<'class'>;
  loads: Counter<'class' | 'outcome'>;
  alarmFires: Counter<'class' | 'outcome'>;
  alarmRetries: Counter<'class'>;
}

export function createStorageMetrics(registry: Registry): StorageMetrics {
  const registers = [registry];
  return {
    ops: new Counter({
      name: 'castellan_storage_ops_total',
      help: 'Storage API operations, by kind (get, put, delete, list, transaction, delete_all, alarm_*; write = planned writes) and outcome.',
      labelNames: ['class', 'kind', 'outcome'],
      registers,
    }),
    commits: new Counter({
      name: 'castellan_storage_commits_total',
      help: 'Atomic JetStream batches committed by storage, by outcome (ok or error code).',
      labelNames: ['class', 'outcome'],
      registers,
    }),
    commitLatency: new Histogram({
      name: 'castellan_storage_commit_duration_seconds',
      help: 'Time from sending a storage batch to its durable acknowledgement.',
      labelNames: ['class'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    batchWrites: new Histogram({
      name: 'castellan_storage_batch_writes',
      help: 'Writes coalesced into one committed batch.',
      labelNames: ['class'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    }),
    objectBytes: new Histogram({
      name: 'castellan_storage_object_bytes',
      help: 'Bytes (keys + values) of an object after each commit.',
      labelNames: ['class'],
      buckets: [0, 64, 1024, 16_384, 262_144, 1_048_576, 16_777_216, 268_435_456],
      registers,
    }),
    loads: new Counter({
      name: 'castellan_storage_loads_total',
      help: 'Loads of an object state into memory at activation (or after an unacknowledged commit), by outcome.',
      labelNames: ['class', 'outcome'],
      registers,
    }),
    alarmFires: new Counter({
      name: 'castellan_alarm_fires_total',
      help: 'Alarm deliveries to the app, by outcome (ok, failed, gave_up).',
      labelNames: ['class', 'outcome'],
      registers,
    }),
    alarmRetries: new Counter({
      name: 'castellan_alarm_retries_total',
      help: 'Alarm deliveries that were retries of a failed one.',
      labelNames: ['class'],
      registers,
    }),
  };
}
