/**
 * Runs `castellan dev`'s child processes the way a kubelet runs containers:
 * each child is spawned with its environment in its own process group (so a
 * shell command's grandchildren are stopped with it, and Ctrl-C in the
 * terminal reaches only `castellan dev`, which stops children in order), its
 * output is prefixed with its name, and a child that dies unexpectedly is
 * restarted after about 2 s (unless restarts are off). A child that keeps
 * crashing right after its start is restarted less and less often (up to
 * 30 s), like a CrashLoopBackOff.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { exited, spawnOwned } from '../../common/children.ts';
import type { Logger } from '../../common/logger.ts';
import { formatLine } from './logs.ts';
import type { TextSink } from './output.ts';

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
  /** Crashes in a row that came soon after a start (drives the back-off). */
  quickCrashes: number;
  startedAt: number;
  stopped: boolean;
}

export interface SupervisorOptions {
  restart: boolean;
  log: Logger;
  /** Where children's prefixed output goes. */
  output: TextSink;
  /** Colour the prefixes (default: when output is a terminal). */
  colour?: boolean;
  /** Called after a child was (re)started: its pid changed. */
  onSpawn?: (child: Supervised) => void;
  /** Told about every process group started and gone (the reaper). */
  groups?: { add(pgid: number): void; remove(pgid: number): void };
}

export const RESTART_DELAY_MS = 2_000;
const MAX_RESTART_DELAY_MS = 30_000;
/** A child that ran at least this long before dying counts as healthy again. */
const HEALTHY_RUN_MS = 10_000;
/** Quick crashes restarted after the plain 2 s before the back-off starts. */
const FREE_QUICK_CRASHES = 3;

/** Delay before restarting a child that has crashed `quickCrashes` times in a row soon after starting. */
export function restartDelay(quickCrashes: number): number {
  const extra = Math.max(0, quickCrashes - FREE_QUICK_CRASHES);
  return Math.min(MAX_RESTART_DELAY_MS, RESTART_DELAY_MS * 2 ** extra);
}

/** Signals a whole process group; false when it no longer exists. */
function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

const groups = new Set<number>();
let hooked = false;

/** If `castellan dev` exits without stopping its children (a crash), their groups are killed. */
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const pid of groups) {
      signalGroup(pid, 'SIGCONT');
      signalGroup(pid, 'SIGKILL');
    }
  });
}

export class Supervisor {
  private readonly children = new Map<string, Supervised>();
  private stopping = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly opts: SupervisorOptions;
  private width = 6;

  constructor(opts: SupervisorOptions) {
    this.opts = opts;
  }

  /** Pads every prefix to the longest name (call before starting, with every name). */
  setNames(names: string[]): void {
    this.width = Math.max(this.width, ...names.map((n) => n.length));
  }

  start(spec: ChildSpec): Supervised {
    if (this.children.has(spec.name)) throw new Error(`a child named ${spec.name} is already supervised`);
    const entry: Supervised = { spec, process: undefined, restarts: 0, quickCrashes: 0, startedAt: 0, stopped: false };
    this.children.set(spec.name, entry);
    this.width = Math.max(this.width, spec.name.length);
    this.spawn(entry);
    return entry;
  }

  get(name: string): Supervised | undefined {
    return this.children.get(name);
  }

  list(): Supervised[] {
    return [...this.children.values()];
  }

  private write(name: string, line: string): void {
    this.opts.output.write(`${formatLine(name, line, { width: this.width, colour: this.opts.colour ?? false })}\n`);
  }

  private spawn(entry: Supervised): void {
    hookExit();
    const { spec } = entry;
    const child = spawnOwned(spec.command, spec.args, { env: spec.env, cwd: spec.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    entry.process = child;
    entry.startedAt = Date.now();
    const pid = child.pid;
    if (pid !== undefined) {
      groups.add(pid);
      this.opts.groups?.add(pid);
    }
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue;
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => this.write(spec.name, line));
    }
    child.once('error', (err) => this.write(spec.name, `failed to start: ${err.message}`));
    child.once('exit', (code, signal) => {
      if (pid !== undefined) {
        // Whatever the child left behind in its group (a shell command's grandchildren) goes with it.
        signalGroup(pid, 'SIGKILL');
        groups.delete(pid);
        this.opts.groups?.remove(pid);
      }
      if (this.stopping || entry.stopped || entry.process !== child) return;
      const how = signal === null ? `exit code ${code}` : `signal ${signal}`;
      if (!this.opts.restart) {
        this.write(spec.name, `exited (${how}); not restarting (--no-restart)`);
        this.opts.log.warn('child exited; not restarting (--no-restart)', { child: spec.name, code, signal });
        return;
      }
      entry.quickCrashes = Date.now() - entry.startedAt < HEALTHY_RUN_MS ? entry.quickCrashes + 1 : 0;
      const delay = restartDelay(entry.quickCrashes);
      this.write(spec.name, `exited (${how}); restarting in ${(delay / 1000).toFixed(0)}s`);
      this.opts.log.warn('child exited; restarting', { child: spec.name, code, signal, inMs: delay });
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.stopping || entry.stopped) return;
        entry.restarts += 1;
        this.spawn(entry);
        this.write(spec.name, `restarted (pid ${entry.process?.pid ?? '?'}, restart #${entry.restarts})`);
      }, delay);
      this.timers.add(timer);
    });
    this.opts.onSpawn?.(entry);
  }

  /**
   * Stops the named children (in parallel): SIGTERM to each process group,
   * SIGKILL after `graceMs`. Resolves once they are gone; they are not restarted.
   */
  async stop(names: string[], graceMs = 10_000): Promise<void> {
    await Promise.all(
      names.map(async (name) => {
        const entry = this.children.get(name);
        if (entry === undefined) return;
        entry.stopped = true;
        const child = entry.process;
        if (child === undefined || child.pid === undefined) return;
        const pid = child.pid;
        const done = exited(child);
        if (child.exitCode === null && child.signalCode === null) {
          signalGroup(pid, 'SIGCONT');
          signalGroup(pid, 'SIGTERM');
        }
        const timer = setTimeout(() => {
          this.opts.log.warn('child did not stop in time; killing it', { child: name, graceMs });
          signalGroup(pid, 'SIGKILL');
        }, graceMs);
        await done;
        clearTimeout(timer);
      }),
    );
  }

  /** Stops the named children and forgets them (a queue deleted at runtime); the names may be started again. */
  async remove(names: string[], graceMs = 10_000): Promise<void> {
    await this.stop(names, graceMs);
    for (const n of names) this.children.delete(n);
  }

  /** Stops every child: first the groups given (in order), then the rest. */
  async stopAll(order: string[][] = [], graceMs = 10_000): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const done = new Set<string>();
    for (const names of [...order, this.list().map((e) => e.spec.name)]) {
      const todo = names.filter((n) => !done.has(n));
      await this.stop(todo, graceMs);
      for (const n of todo) done.add(n);
    }
  }
}
