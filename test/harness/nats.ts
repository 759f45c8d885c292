/**
 * Test harness: a real NATS JetStream cluster per test file, in a temporary
 * directory removed at teardown. Thin on purpose: the launcher itself is
 * local/nats-cluster.ts, the same one `castellan dev` uses.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsCluster, type NatsClusterOptions } from '../../local/nats-cluster.ts';

export interface TestNats {
  cluster: NatsCluster;
  urls: string[];
  /** A client connection that reconnects across node restarts; closed by dispose(). */
  connect(): Promise<NatsConnection>;
  dispose(): Promise<void>;
}

export async function startNats(servers = 3, opts: Partial<NatsClusterOptions> = {}): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-nats-'));
  const cluster = await NatsCluster.start({ servers, dir, ...opts });
  const conns: NatsConnection[] = [];
  return {
    cluster,
    urls: cluster.urls,
    async connect() {
      // Short pings: a client on a SIGSTOPped server notices and moves within seconds.
      const nc = await connect({
        servers: cluster.urls,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
        pingInterval: 1_000,
        maxPingOut: 2,
        name: 'castellan-test',
      });
      conns.push(nc);
      return nc;
    },
    async dispose() {
      await Promise.allSettled(conns.map((c) => c.close()));
      await cluster.shutdown({ removeDir: dir });
    },
  };
}
