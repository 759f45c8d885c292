/**
 * The express guard for `castellan-namespace` outside object
 * and queue calls (docs/security.md §3): those may name another namespace
 * (sidecar/access/remote-call.ts, remote-queues.ts); listing, inspecting and
 * deleting objects (SPEC §2.6) and object storage are served only in the
 * sidecar's own namespace (storage, served without express, applies the same
 * rule in its handler, storage/routes.ts). A request that names another namespace is refused
 * with 403 FORBIDDEN instead of being answered silently from the own one:
 * listing another namespace's objects is impossible by construction (this
 * sidecar's NATS account holds only its own namespace's streams).
 */
import type { NextFunction, Request, Response } from 'express';
import { foreignNamespaceRefusal } from '../../common/access.ts';

export function namespaceGuard(namespace: string): (req: Request, res: Response, next: NextFunction) => void {
  return (req, _res, next) => {
    const refusal = foreignNamespaceRefusal(req.headers['castellan-namespace'], namespace, req.originalUrl);
    next(refusal);
  };
}
