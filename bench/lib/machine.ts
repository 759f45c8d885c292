/** The machine a run measured: CPUs, memory, load, Node and nats-server versions. */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { toolPath } from '../../common/paths.ts';

export function machine(): Record<string, unknown> {
  let nats: string;
  try {
    nats = execFileSync(toolPath('nats-server'), ['--version'], { encoding: 'utf8' }).trim();
  } catch (err) {
    nats = `unavailable: ${err instanceof Error ? err.message : String(err)}`;
  }
  const c = cpus();
  return {
    cpus: c.length,
    cpuModel: c[0]?.model ?? 'unknown',
    memoryGB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    platform: `${process.platform} ${release()}`,
    node: process.version,
    natsServer: nats,
    loadAverageAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
