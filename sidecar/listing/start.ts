/**
 * Wiring of object listing in a sidecar (called from sidecar/objects/mod.ts):
 * the service and its routes on every role, and on an object host the
 * owner-side delete (a sidecar-answered path of the host, owner.ts).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Router as ExpressRouter } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../../common/logger.ts';
import type { ObjectHost } from '../objects/host.ts';
import type { Membership } from '../objects/membership.ts';
import type { ObjectStore } from '../objects/ownership-store.ts';
import type { Router } from '../objects/router.ts';
import type { Journal } from '../storage/journal.ts';
import type { Storage } from '../storage/storage.ts';
import { createListingMetrics } from './metrics.ts';
import { ownerDelete } from './owner.ts';
import { listingRoutes } from './routes.ts';
import { DELETE_PATH, Listing } from './service.ts';

export interface ListingDeps {
  store: ObjectStore;
  membership: Membership;
  router: Router;
  journal: Journal;
  storage: Storage;
  host: ObjectHost | undefined;
}

export function startListing(nc: NatsConnection, registry: Registry, deps: ListingDeps, log: Logger): { routes: ExpressRouter; stop(): void } {
  const metrics = createListingMetrics(registry);
  const listing = new Listing(nc, deps.store, deps.membership, deps.router, deps.journal, metrics, { viewIdleMs: 10 * 60_000, syncTimeoutMs: 20_000 }, log);
  if (deps.host !== undefined) deps.host.handleInternally(DELETE_PATH, ownerDelete(deps.storage, deps.host.cls, deps.store.names(deps.host.cls)));
  return { routes: listingRoutes(listing, metrics), stop: () => listing.stop() };
}
