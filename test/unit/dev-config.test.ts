/**
 * `castellan dev`'s pure parts: the configuration schema (SPEC §4 plus the
 * queue fields and the `apps` extension), readable log lines, the banner,
 * the restart back-off, and `castellan call` target parsing.
 */
import { describe, expect, it } from '@jest/globals';
import { devConfigSchema, processNames } from '../../local/dev/config.ts';
import { formatLine, readable } from '../../local/dev/logs.ts';
import { banner, shellQuote } from '../../local/dev/banner.ts';
import { restartDelay, RESTART_DELAY_MS } from '../../local/dev/supervisor.ts';
import { objectPath, parseTarget } from '../../cli/commands/call.ts';
import { parseHeaders } from '../../cli/sidecar-client.ts';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FdWriter } from '../../local/dev/output.ts';

const issues = (input: unknown): string[] => {
  const r = devConfigSchema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('dev config', () => {
  it('accepts the SPEC example and fills the ReplicatedQueue defaults', () => {
    const c = devConfigSchema.parse({
      nats: { embedded: { servers: 1 } },
      objects: { counter: { hosts: 3, app: { command: 'node examples/counter/app.js' } } },
      queues: { jobs: { hosts: 3, replicaCount: 2 } },
      client: { port: 3600 },
    });
    expect(c.queues.jobs).toEqual({ hosts: 3, replicaCount: 2, visibilityTimeout: 30_000, messageRetention: 4 * 86_400_000, maxMessageBytes: 262_144, delay: 0 });
    expect(c.objects.counter).toMatchObject({ hosts: 3, concurrency: 'Serial', try: [] });
    expect(c.apps).toEqual({});
    expect(processNames(c)).toEqual(['counter-0', 'counter-0-app', 'counter-1', 'counter-1-app', 'counter-2', 'counter-2-app', 'jobs-0', 'jobs-1', 'jobs-2', 'client']);
  });

  it('parses durations and dead letters', () => {
    const c = devConfigSchema.parse({
      queues: {
        jobs: { hosts: 2, replicaCount: 2, visibilityTimeout: '1m', messageRetention: '1d', delay: '5s', maxMessageBytes: 1024, deadLetter: { queue: 'dead', maxReceiveCount: 3 } },
        dead: { hosts: 1, replicaCount: 1 },
      },
      apps: { worker: { command: 'node w.js', queue: 'jobs', replicas: 2 } },
    });
    expect(c.queues.jobs).toMatchObject({ visibilityTimeout: 60_000, messageRetention: 86_400_000, delay: 5_000, deadLetter: { queue: 'dead', maxReceiveCount: 3 } });
    expect(c.apps.worker).toMatchObject({ replicas: 2, queue: 'jobs', env: {} });
    expect(c.nats).toEqual({ embedded: { servers: 1 } });
    expect(c.client.port).toBe(3600);
  });

  it.each([
    [{ queues: { jobs: { hosts: 1, replicaCount: 2 } } }, /^queues\.jobs\.replicaCount: must be at most hosts/],
    [{ queues: { jobs: { replicaCount: 6 } } }, /^queues\.jobs\.replicaCount/],
    [{ queues: { jobs: { messageRetention: '15d' } } }, /^queues\.jobs\.messageRetention: must be at most 14d/],
    [{ queues: { jobs: { messageRetention: '30s' } } }, /^queues\.jobs\.messageRetention: must be at least 1m/],
    [{ queues: { jobs: { delay: '16m' } } }, /^queues\.jobs\.delay: must be at most 15m/],
    [{ queues: { jobs: { visibilityTimeout: 'soon' } } }, /^queues\.jobs\.visibilityTimeout: "soon" is not a duration/],
    [{ queues: { jobs: { maxMessageBytes: 2_000_000 } } }, /^queues\.jobs\.maxMessageBytes/],
    [{ queues: { jobs: { deadLetter: { queue: 'nowhere', maxReceiveCount: 3 } } } }, /^queues\.jobs\.deadLetter\.queue: queue "nowhere" is not defined/],
    [{ queues: { jobs: { deadLetter: { queue: 'jobs', maxReceiveCount: 3 } } } }, /^queues\.jobs\.deadLetter\.queue: must name another queue/],
    [{ queues: { jobs: { deadLetter: { queue: 'x' } } } }, /^queues\.jobs\.deadLetter\.maxReceiveCount/],
    [{ queues: { jobs: { hosts: 3, replicas: 2 } } }, /^queues\.jobs: Unrecognized key: "replicas"/],
    [{ queues: { Jobs: {} } }, /^queues\.Jobs: bad name: names are Kubernetes names/],
    [{ objects: { jobs: { app: { command: 'x' } } }, queues: { jobs: {} } }, /^queues\.jobs: "jobs" is already used in objects/],
    [{ apps: { client: { command: 'x' } } }, /^apps\.client: "client" is the name of the client sidecar/],
    [{ apps: { w: { command: 'x', queue: 'jobs' } } }, /^apps\.w\.queue: queue "jobs" is not defined/],
    [{ objects: { counter: { hosts: 0, app: { command: 'x' } } } }, /^objects\.counter\.hosts/],
    [{ objects: { counter: { app: {} } } }, /^objects\.counter\.app\.command/],
    [{ objects: { counter: { app: { command: 'x' }, try: ['increment'] } } }, /^objects\.counter\.try\.0: expected "METHOD \/path \[body\]"/],
    [{ client: { port: 0 } }, /^client\.port/],
    [{ nats: { embedded: { servers: 2 } } }, /^nats/],
  ])('rejects %j naming the field', (input, pattern) => {
    const found = issues(input);
    expect(found.some((i) => pattern.test(i))).toBe(true);
  });
});

describe('readable logs', () => {
  it('turns winston JSON into a prefixed readable line', () => {
    const line = JSON.stringify({ level: 'info', message: 'sidecar listening', component: 'sidecar', pid: 7, role: 'client', timestamp: '2026-11-24T06:16:51.113Z', url: 'http://127.0.0.1:3600', nats: ['nats://a'] });
    expect(formatLine('client', line, { width: 9, colour: false })).toBe('client    | 06:16:51.113 info  sidecar: sidecar listening url=http://127.0.0.1:3600 nats=["nats://a"]');
  });

  it('passes other output through unchanged', () => {
    expect(readable('plain text {')).toBe('plain text {');
    expect(readable('{"not":"a log"}')).toBe('{"not":"a log"}');
    expect(readable('{broken')).toBe('{broken');
    const esc = String.fromCharCode(27);
    expect(formatLine('a', 'hello', { width: 3, colour: true })).toMatch(new RegExp(`^${esc}\\[\\d+ma {3}\\|${esc}\\[0m hello$`));
  });

  it('quotes values with spaces', () => {
    expect(readable(JSON.stringify({ level: 'warn', message: 'm', error: 'two words' }))).toBe('warn  m error="two words"');
  });
});

describe('banner', () => {
  it('lists the processes and suggests calls for objects and the first queue', () => {
    const config = devConfigSchema.parse({
      objects: { counter: { app: { command: 'x' }, try: ['POST /increment', 'POST /alarm-in {"ms":1000}'] } },
      queues: { jobs: {} },
      client: { port: 3601 },
    });
    const text = banner(
      {
        ready: true,
        nats: { urls: ['nats://127.0.0.1:4333'] },
        processes: [
          { name: 'counter-0', role: 'object-host', class: 'counter', pid: 11, httpPort: 5001 },
          { name: 'jobs-0', role: 'queue-host', queue: 'jobs', pid: 12, httpPort: 5002 },
          { name: 'client', role: 'client', pid: 13, httpPort: 3601 },
        ],
      },
      config,
    );
    expect(text).toContain('curl -X POST http://127.0.0.1:3601/v1/objects/counter/demo/increment');
    expect(text).toContain(`curl -X POST -H 'content-type: application/json' -d '{"ms":1000}' http://127.0.0.1:3601/v1/objects/counter/demo/alarm-in`);
    expect(text).toContain('curl http://127.0.0.1:3601/v1/queues/jobs');
    expect(text).toMatch(/jobs-0 +queue-host jobs +pid 12/);
  });

  it('quotes for the shell', () => {
    expect(shellQuote('abc/d')).toBe('abc/d');
    expect(shellQuote(`it's`)).toBe(`'it'\\''s'`);
  });
});

describe('restart back-off', () => {
  it('restarts after about 2 s, backing off only after repeated quick crashes', () => {
    expect(restartDelay(0)).toBe(RESTART_DELAY_MS);
    expect(restartDelay(1)).toBe(2_000);
    expect(restartDelay(3)).toBe(2_000);
    expect(restartDelay(4)).toBe(4_000);
    expect(restartDelay(5)).toBe(8_000);
    expect(restartDelay(50)).toBe(30_000);
  });
});

describe('castellan call targets', () => {
  it('splits class, id and path and encodes the id', () => {
    expect(parseTarget('counter/alice/increment')).toEqual({ cls: 'counter', id: 'alice', rest: '/increment' });
    expect(parseTarget('counter/alice')).toEqual({ cls: 'counter', id: 'alice', rest: '' });
    expect(parseTarget('counter/alice?x=1')).toEqual({ cls: 'counter', id: 'alice', rest: '?x=1' });
    expect(objectPath(parseTarget('counter/a b.c/x/y?q=1'))).toBe('/v1/objects/counter/a%20b.c/x/y?q=1');
    expect(objectPath(parseTarget('counter/alice?x=1'))).toBe('/v1/objects/counter/alice/?x=1');
    expect(objectPath(parseTarget('counter/inc', 'a/b'))).toBe('/v1/objects/counter/a%2Fb/inc');
    expect(() => parseTarget('counter')).toThrow(/missing object id/);
    expect(() => parseTarget('Counter/x')).toThrow(/not a class name/);
  });

  it('parses headers', () => {
    expect(parseHeaders(['X-A: 1', 'b:two words'])).toEqual({ 'x-a': '1', b: 'two words' });
    expect(() => parseHeaders(['nocolon'])).toThrow(/Name: value/);
  });
});

describe('FdWriter', () => {
  it('writes lines in order and drops beyond its limit', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'castellan-fdwriter-')), 'out.txt');
    const fd = openSync(file, 'w');
    const w = new FdWriter(fd, 25);
    expect(w.write('one\n')).toBe(true);
    expect(w.write('two\n')).toBe(true);
    expect(w.write('x'.repeat(30))).toBe(false);
    expect(w.droppedLines).toBe(1);
    for (let i = 0; i < 100 && readFileSync(file, 'utf8').length < 8; i++) await new Promise((r) => setTimeout(r, 10));
    expect(w.write('three\n')).toBe(true);
    for (let i = 0; i < 100 && !readFileSync(file, 'utf8').includes('three'); i++) await new Promise((r) => setTimeout(r, 10));
    closeSync(fd);
    expect(readFileSync(file, 'utf8')).toBe('one\ntwo\ncastellan dev: 1 output lines were dropped because nobody read them\nthree\n');
  });
});
