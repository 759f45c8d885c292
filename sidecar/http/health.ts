/**
 * `/healthz` (the process answers), `/readyz` (every readiness check passes)
 * and `/metrics` (Prometheus text). Features add readiness checks by name.
 */
import { Router } from 'express';
import type { Registry } from 'prom-client';
import { describeError } from '../../common/logger.ts';

/** A readiness check: resolves to true when ready, or a reason string when not. */
export type ReadinessCheck = () => Promise<true | string> | true | string;

export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();
  private draining = false;

  add(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  /** Marks the process as shutting down: /readyz fails from now on. */
  drain(): void {
    this.draining = true;
  }

  async evaluate(): Promise<{ ready: boolean; checks: Record<string, string> }> {
    const checks: Record<string, string> = {};
    let ready = !this.draining;
    if (this.draining) checks.shutdown = 'draining';
    for (const [name, check] of this.checks) {
      let result: true | string;
      try {
        result = await check();
      } catch (err) {
        result = describeError(err);
      }
      checks[name] = result === true ? 'ok' : result;
      if (result !== true) ready = false;
    }
    return { ready, checks };
  }
}

export function healthRouter(readiness: Readiness, registry: Registry): Router {
  const r = Router();
  r.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  r.get('/readyz', async (_req, res) => {
    const { ready, checks } = await readiness.evaluate();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
  });
  r.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  return r;
}
