/**
 * Baseline responder: plain NATS request/reply plus one local HTTP hop, the
 * floor under Castellan's remote call (caller → NATS → owner → app). Each
 * request's payload is an object id; the responder POSTs /hit to its app with
 * that id and replies with the app's body. In a queue group, several
 * responders share the subject (the stateless-failover baseline).
 * Env: NATS_URL (comma-separated), SUBJECT, QUEUE (optional), APP_PORT, BENCH_HOST.
 */
import { Agent, request } from 'node:http';
import { connect } from '@nats-io/transport-node';

const agent = new Agent({ keepAlive: true, maxSockets: 256 });
const appPort = Number(process.env.APP_PORT);
const host = process.env.BENCH_HOST ?? 'responder';

function hit(id: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: appPort, method: 'POST', path: '/hit', agent, headers: { 'castellan-id': id, 'castellan-class': 'baseline', 'content-length': '0' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const nc = await connect({ servers: (process.env.NATS_URL ?? '').split(','), name: `bench-responder-${host}`, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
const queue = process.env.QUEUE;
nc.subscribe(process.env.SUBJECT ?? 'bench.rr', {
  ...(queue ? { queue } : {}),
  callback: (err, msg) => {
    if (err !== null) return;
    hit(msg.string()).then(
      (body) => msg.respond(body),
      (e: Error) => msg.respond(JSON.stringify({ error: e.message, host })),
    );
  },
});
process.on('SIGTERM', () => {
  void nc.drain().finally(() => process.exit(0));
});
