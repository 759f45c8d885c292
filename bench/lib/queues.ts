/**
 * Replicated-queue helpers (SPEC §2.3), spoken to any sidecar, and the probe
 * that tells a scenario whether this build serves the queue API at all.
 */
import { sleep } from '../../common/net.ts';
import { http, httpJson } from './http.ts';
import { SkipScenario } from './scenario.ts';

export interface Received {
  messageId: string;
  receiptHandle: string;
  body: string;
}

export async function requireQueues(sidecarUrl: string): Promise<void> {
  const r = await http(`${sidecarUrl}/v1/queues/bench-probe`);
  if (r.status === 404 && r.body.toString('utf8').includes('ROUTE_NOT_FOUND')) {
    throw new SkipScenario('the queue API (SPEC §2.3) is not served by this sidecar build (404 ROUTE_NOT_FOUND)');
  }
}

export class QueueClient {
  readonly base: string;
  constructor(sidecarUrl: string, queue: string) {
    this.base = `${sidecarUrl}/v1/queues/${encodeURIComponent(queue)}`;
  }

  async send(body: string, replicas: number): Promise<string> {
    const r = await httpJson<{ messageId: string }>(`${this.base}/messages`, { method: 'POST', body: JSON.stringify({ body, replicas }) });
    return r.messageId;
  }

  async receive(maxMessages: number, waitSeconds: number, visibilityTimeoutSeconds = 30): Promise<Received[]> {
    const r = await httpJson<{ messages: Received[] }>(`${this.base}/receive`, {
      method: 'POST',
      body: JSON.stringify({ maxMessages, waitSeconds, visibilityTimeoutSeconds }),
      timeoutMs: (waitSeconds + 30) * 1000,
    });
    return r.messages;
  }

  /** Receives until one message arrives (or `timeoutMs` passes). */
  async receiveOne(timeoutMs = 30_000, visibilityTimeoutSeconds = 30): Promise<Received> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const [m] = await this.receive(1, 1, visibilityTimeoutSeconds);
      if (m !== undefined) return m;
    }
    throw new Error(`no message received within ${timeoutMs} ms`);
  }

  async delete(receiptHandle: string): Promise<void> {
    const r = await http(`${this.base}/messages/${encodeURIComponent(receiptHandle)}`, { method: 'DELETE' });
    if (r.status !== 204 && r.status !== 200) throw new Error(`delete → ${r.status} ${r.body.toString('utf8').slice(0, 200)}`);
  }

  /** Waits until the queue answers its info route (hosts registered). */
  /**
   * Waits until the queue is known and `replicas` of its hosts are live: a
   * probe message with that replica count is accepted (then received and
   * deleted), so a measurement never starts while hosts are still loading.
   */
  async waitReady(timeoutMs = 60_000, replicas = 1): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let last = '';
    while (performance.now() < deadline) {
      const r = await http(this.base).catch((e: Error) => ({ status: 0, body: Buffer.from(e.message) }));
      if (r.status === 200) {
        const sent = await http(`${this.base}/messages`, { method: 'POST', body: JSON.stringify({ body: 'bench-probe', replicas }) }).catch((e: Error) => ({ status: 0, body: Buffer.from(e.message) }));
        if (sent.status === 201) {
          await this.delete((await this.receiveOne(Math.max(1_000, deadline - performance.now()))).receiptHandle);
          return;
        }
        last = `probe send: ${sent.status} ${sent.body.toString('utf8').slice(0, 200)}`;
      } else {
        last = `${r.status} ${r.body.toString('utf8').slice(0, 200)}`;
      }
      await sleep(200);
    }
    throw new Error(`queue ${this.base} not ready (${replicas} live hosts) after ${timeoutMs} ms: ${last}`);
  }
}
