/**
 * Prometheus metrics of object listing, per class, on the sidecar's registry.
 * The per-class object count and stored bytes are those of the index views
 * this sidecar holds (a sidecar that never listed a class exports nothing for
 * it); the operator exports the same per DurableObject for every class.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ListingMetrics {
  objects: Gauge<'class'>;
  bytes: Gauge<'class'>;
  requests: Counter<'class' | 'kind' | 'outcome'>;
  pageLatency: Histogram<'class'>;
  collected: Counter<'class'>;
}

export function createListingMetrics(registry: Registry): ListingMetrics {
  const registers = [registry];
  return {
    objects: new Gauge({ name: 'castellan_class_objects', help: 'Objects with storage or an alarm in the class index (as this sidecar\'s view holds it).', labelNames: ['class'], registers }),
    bytes: new Gauge({ name: 'castellan_class_stored_bytes', help: 'Key and value bytes stored by the objects of the class (as this sidecar\'s index view holds it).', labelNames: ['class'], registers }),
    requests: new Counter({
      name: 'castellan_listing_requests_total',
      help: 'Listing and inspection API requests, by kind (list, get, delete, keys) and outcome.',
      labelNames: ['class', 'kind', 'outcome'],
      registers,
    }),
    pageLatency: new Histogram({
      name: 'castellan_listing_page_duration_seconds',
      help: 'Time to answer one page of an object listing (index sync, seek, owner and alarm lookup).',
      labelNames: ['class'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    collected: new Counter({ name: 'castellan_listing_entries_collected_total', help: 'Index entries of objects left with neither storage nor alarm, removed by a listing.', labelNames: ['class'], registers }),
  };
}
