/**
 * `npm run bench [-- --quick|--smoke] [--only a,b] [--out FILE]`: starts a
 * 3-node NATS JetStream cluster on loopback and the processes each scenario
 * needs, measures every scenario against its baseline in the same run
 * (alternating rounds), writes the report (SPEC §5: bench/results/latest.json)
 * and an SVG of the latency distributions next to it, and prints a table.
 * A scenario whose feature this build lacks is reported as skipped with the
 * reason; one that fails is reported under `failed` (exit code 1 only with
 * --strict: the report is the output, failures included).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { projectRoot } from '../common/paths.ts';
import { BenchEnv, logDir } from './lib/env.ts';
import { closeHttp } from './lib/http.ts';
import { machine } from './lib/machine.ts';
import { startObjectsFixture, type ObjectsFixture } from './lib/objects.ts';
import type { BenchReport } from './lib/result.ts';
import { params, SkipScenario, type Ctx, type Mode, type Scenario } from './lib/scenario.ts';
import { latencySvg } from './lib/svg.ts';
import { textTable } from './lib/table.ts';
import { activation } from './scenarios/activation.ts';
import { failover } from './scenarios/failover.ts';
import { hotObject } from './scenarios/hot-object.ts';
import { largeObject } from './scenarios/large-object.ts';
import { listing } from './scenarios/listing.ts';
import { localCall } from './scenarios/local-call.ts';
import { memory } from './scenarios/memory.ts';
import { queues } from './scenarios/queues.ts';
import { queueScale } from './scenarios/queue-scale.ts';
import { remoteCall } from './scenarios/remote-call.ts';
import { sqs } from './scenarios/sqs.ts';
import { storage } from './scenarios/storage.ts';

/** In run order; failover last, as it kills NATS servers. */
const scenarios: Scenario[] = [remoteCall, localCall, hotObject, storage, activation, largeObject, queues, queueScale, sqs, memory, listing, failover];

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string', default: join(projectRoot, 'bench', 'results', 'latest.json') },
      /** Exit 1 when any measurement failed (the report is written either way). */
      strict: { type: 'boolean', default: false },
    },
  });
  const mode: Mode = values.smoke ? 'smoke' : values.quick ? 'quick' : 'full';
  const only = values.only?.split(',').map((s) => s.trim());
  const selected = only === undefined ? scenarios : scenarios.filter((s) => only.includes(s.name));
  if (only !== undefined && selected.length !== only.length) {
    throw new Error(`unknown scenario in --only ${values.only}; known: ${scenarios.map((s) => s.name).join(', ')}`);
  }
  const started = new Date();
  const t0 = performance.now();
  const say = (msg: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
  const report: BenchReport = { machine: machine(), mode, startedAt: started.toISOString(), durationSeconds: 0, results: [], skipped: [], failed: [] };
  say(`mode ${mode}; starting a 3-node NATS cluster; process logs in ${logDir}`);
  const env = await BenchEnv.start();
  let fixture: Promise<ObjectsFixture> | undefined;
  let nc: Promise<NatsConnection> | undefined;
  try {
    for (const s of selected) {
      const ctx: Ctx = {
        mode,
        p: params[mode],
        env,
        objects: () =>
          (fixture ??= startObjectsFixture(env).catch((err: unknown) => {
            fixture = undefined; // the next scenario tries again
            throw err;
          })),
        nc: () => (nc ??= env.connect()),
        log: (msg) => say(`${s.name}: ${msg}`),
        fail: (reason) => {
          report.failed.push({ scenario: s.name, reason });
          say(`${s.name}: FAILED: ${reason}`);
        },
      };
      const ts = performance.now();
      say(`${s.name}: ${s.title}`);
      try {
        const rs = await s.run(ctx);
        report.results.push(...rs);
        for (const r of rs) say(`${s.name}: ${r.name}: ${r.value} ${r.unit} vs ${r.baseline.value} (${r.baseline.name}) → ratio ${r.ratio}`);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        if (err instanceof SkipScenario) report.skipped.push({ scenario: s.name, reason });
        else report.failed.push({ scenario: s.name, reason });
        say(`${s.name}: ${err instanceof SkipScenario ? 'SKIPPED' : 'FAILED'}: ${reason}`);
      }
      say(`${s.name}: done in ${((performance.now() - ts) / 1000).toFixed(1)} s`);
    }
  } finally {
    closeHttp();
    await env.dispose();
  }
  report.durationSeconds = Math.round((performance.now() - t0) / 1000);
  report.machine.sidecarStartupRestarts = env.restarts;
  report.machine.loadAverageAtEnd = (await import('node:os')).loadavg().map((x) => Math.round(x * 100) / 100);
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
  const svg = values.out.replace(/\.json$/, '') + '-latency.svg';
  writeFileSync(svg, latencySvg(report));
  console.log(textTable(report));
  say(`wrote ${values.out} and ${svg} in ${report.durationSeconds} s`);
  if (report.failed.length > 0) say(`${report.failed.length} measurement(s) FAILED (see "failed" in the report)`);
  return values.strict && report.failed.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
