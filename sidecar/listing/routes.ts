/**
 * HTTP surface of object listing and inspection (SPEC §2.6), on every sidecar:
 *   GET    /v1/classes/{class}/objects?prefix=&after=&limit=
 *   GET    /v1/classes/{class}/objects/{id}
 *   DELETE /v1/classes/{class}/objects/{id}
 *   GET    /v1/classes/{class}/objects/{id}/keys?prefix=&after=&limit=   (read-only inspection)
 * Paths are parsed from the raw URL so the id is percent-decoded exactly once.
 */
import { Router as ExpressRouter, type Request, type Response } from 'express';
import { CastellanError, Errors } from '../../common/errors.ts';
import { parseIdSegment } from '../objects/subjects.ts';
import { MAX_KEY_BYTES } from '../storage/keys.ts';
import type { ListingMetrics } from './metrics.ts';
import { parsePageQuery } from './query.ts';
import { MAX_ID_BYTES, type Listing } from './service.ts';

const PREFIX = '/v1/classes/';

export type ListingTarget =
  | { kind: 'list'; cls: string; query: URLSearchParams }
  | { kind: 'object'; cls: string; id: string; query: URLSearchParams }
  | { kind: 'keys'; cls: string; id: string; query: URLSearchParams };

/** Parses a listing URL (pure). */
export function parseListingUrl(url: string): ListingTarget {
  const q = url.indexOf('?');
  const pathname = q === -1 ? url : url.slice(0, q);
  const query = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
  const parts = pathname.slice(PREFIX.length).split('/');
  let cls: string;
  try {
    cls = decodeURIComponent(parts[0] ?? '');
  } catch {
    throw Errors.classNotFound(parts[0] ?? '');
  }
  if (!pathname.startsWith(PREFIX) || parts[1] !== 'objects') throw Errors.notFound(`No route for ${pathname}; use /v1/classes/{class}/objects.`, 'ROUTE_NOT_FOUND');
  if (cls === '') throw Errors.classNotFound(cls);
  if (parts.length === 2 || (parts.length === 3 && parts[2] === '')) return { kind: 'list', cls, query };
  const id = parseIdSegment(parts[2]!);
  if (parts.length === 3) return { kind: 'object', cls, id, query };
  if (parts.length === 4 && parts[3] === 'keys') return { kind: 'keys', cls, id, query };
  throw Errors.notFound(`No route for ${pathname}.`, 'ROUTE_NOT_FOUND');
}

export function listingRoutes(listing: Listing, metrics: ListingMetrics): ExpressRouter {
  const r = ExpressRouter();
  r.all(/^\/v1\/classes(?:\/.*)?$/, async (req: Request, res: Response) => {
    const t = parseListingUrl(req.originalUrl);
    const m = req.method;
    const count = async (kind: string, p: () => Promise<void>) => {
      try {
        await p();
        metrics.requests.inc({ class: t.cls, kind, outcome: 'ok' });
      } catch (err) {
        metrics.requests.inc({ class: t.cls, kind, outcome: err instanceof CastellanError ? err.code : 'INTERNAL' });
        throw err;
      }
    };
    const allow = (allowed: string[]) => {
      if (!allowed.includes(m)) throw Errors.methodNotAllowed(`${m} is not allowed here; use ${allowed.join(' or ')}.`);
    };
    switch (t.kind) {
      case 'list':
        allow(['GET']);
        return count('list', async () => {
          const page = await listing.list(t.cls, parsePageQuery(t.query, MAX_ID_BYTES));
          res.status(200).json(page);
        });
      case 'object':
        allow(['GET', 'DELETE']);
        if (m === 'GET') {
          return count('get', async () => {
            res.status(200).json(await listing.get(t.cls, t.id));
          });
        }
        return count('delete', async () => {
          await listing.delete(t.cls, t.id);
          res.status(204).end();
        });
      case 'keys':
        allow(['GET']);
        return count('keys', async () => {
          res.status(200).json(await listing.keys(t.cls, t.id, parsePageQuery(t.query, MAX_KEY_BYTES)));
        });
    }
  });
  return r;
}
