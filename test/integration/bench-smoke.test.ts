/**
 * `npm run bench` still runs: the benchmark runner in its tiny `--smoke` mode
 * (a few operations per scenario, real NATS cluster and sidecars), writing to
 * a temporary file. Checks the report's shape (SPEC §5): every result has a
 * baseline and a finite ratio, latencies carry p50/p99, skips give a reason,
 * nothing failed. Asserts nothing about speed.
 */
import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../common/paths.ts';

interface Result {
  name: string;
  unit: string;
  value: number;
  baseline: { name: string; value: number };
  ratio: number;
  p50?: number;
  p99?: number;
}

describe('bench runner (smoke)', () => {
  it('runs every scenario on a tiny input and reports each result with its baseline', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'castellan-bench-'));
    const out = join(dir, 'latest.json');
    try {
      const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(projectRoot, 'bench', 'run.ts'), '--smoke', '--out', out], {
        cwd: projectRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let log = '';
      child.stdout.on('data', (c: Buffer) => (log += c.toString()));
      child.stderr.on('data', (c: Buffer) => (log += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      if (code !== 0) console.log(log);
      expect(code).toBe(0);

      const report = JSON.parse(readFileSync(out, 'utf8')) as { machine: Record<string, unknown>; results: Result[]; skipped: { scenario: string; reason: string }[]; failed: unknown[] };
      expect(report.machine.cpus).toEqual(expect.any(Number));
      expect(report.failed).toEqual([]);
      expect(report.results.length).toBeGreaterThanOrEqual(8);
      for (const r of report.results) {
        expect(typeof r.name).toBe('string');
        expect(typeof r.unit).toBe('string');
        expect(Number.isFinite(r.value)).toBe(true);
        expect(r.baseline.name.length).toBeGreaterThan(0);
        expect(Number.isFinite(r.baseline.value) && r.baseline.value > 0).toBe(true);
        expect(Number.isFinite(r.ratio)).toBe(true);
        expect(r.ratio).toBeCloseTo(r.value / r.baseline.value, 1);
        if (r.unit === 'ms') {
          expect(Number.isFinite(r.p50)).toBe(true);
          expect(Number.isFinite(r.p99)).toBe(true);
        }
      }
      for (const s of report.skipped) expect(s.reason.length).toBeGreaterThan(0);
      // Objects, memory and failover need nothing beyond object routing: never skipped.
      const names = report.results.map((r) => r.name).join('\n');
      for (const must of ['remote call latency', 'local call latency', 'one hot object', 'sidecar RSS, idle', 'object failover: owner kill -9']) expect(names).toContain(must);
      expect(readFileSync(join(dir, 'latest-latency.svg'), 'utf8')).toContain('<svg');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
