/**
 * freePort: ports for servers started a moment later, never handed out twice
 * in one process (two servers drawing the same port fail one another).
 */
import { describe, expect, it } from '@jest/globals';
import { createServer } from 'node:net';
import { freePort, freePorts } from '../../common/net.ts';

describe('freePort', () => {
  it('never hands out the same port twice, even to concurrent callers', async () => {
    const ports = await Promise.all(Array.from({ length: 300 }, () => freePort()));
    const more = await freePorts(50);
    expect(new Set([...ports, ...more]).size).toBe(350);
  });

  it('hands out a port a server can then listen on, below the ephemeral range', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThanOrEqual(10_000);
    const srv = createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((r) => srv.close(r));
  });
});
