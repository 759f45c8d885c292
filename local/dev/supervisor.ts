/**
 * Runs `castellan dev`'s child processes the way a kubelet runs containers:
 * each child is spawned with its environment, its output is prefixed with its
 * name, and a child that dies unexpectedly is restarted after about 2 s
 * (unless restarts are off). `stopAll` stops them all and waits for them.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { spawnOwned, terminate } from '../../common/children.ts';
import type { Logger } from '../../common/logger.ts';

export interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface Supervised {
  spec: ChildSpec;
  process: ChildProcess | undefined;
  restarts: number;
}

export interface SupervisorOptions {
  restart: boolean;
  log: Logger;
  /** Where children's prefixed output goes. */
  output: NodeJS.WritableStream;
  /** Called after a child was restarted (its pid changed). */
  onRestart?: (child: Supervised) => void;
}

export const RESTART_DELAY_MS = 2_000;

export class Supervisor {
  private readonly children = new Map<string, Supervised>();
  private stopping = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  private readonly opts: SupervisorOptions;

  constructor(opts: SupervisorOptions) {
    this.opts = opts;
  }

  start(spec: ChildSpec): Supervised {
    const entry: Supervised = { spec, process: undefined, restarts: 0 };
    this.children.set(spec.name, entry);
    this.spawn(entry);
    return entry;
  }

  get(name: string): Supervised | undefined {
    return this.children.get(name);
  }

  list(): Supervised[] {
    return [...this.children.values()];
  }

  private spawn(entry: Supervised): void {
    const { spec } = entry;
    const child = spawnOwned(spec.command, spec.args, { env: spec.env, cwd: spec.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    entry.process = child;
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue;
      createInterface({ input: stream }).on('line', (line) => this.opts.output.write(`[${spec.name}] ${line}\n`));
    }
    child.once('error', (err) => this.opts.log.error('child failed to start', { child: spec.name, error: err.message }));
    child.once('exit', (code, signal) => {
      if (this.stopping || entry.process !== child) return;
      if (!this.opts.restart) {
        this.opts.log.warn('child exited; not restarting (--no-restart)', { child: spec.name, code, signal });
        return;
      }
      this.opts.log.warn('child exited; restarting', { child: spec.name, code, signal, inMs: RESTART_DELAY_MS });
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.stopping) return;
        entry.restarts += 1;
        this.spawn(entry);
        this.opts.onRestart?.(entry);
      }, RESTART_DELAY_MS);
      this.timers.add(timer);
    });
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    await Promise.all(this.list().map((e) => (e.process === undefined ? undefined : terminate(e.process, 'SIGTERM', 10_000))));
  }
}
