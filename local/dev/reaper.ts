/**
 * The reaper: a small process that outlives `castellan dev` only to make sure
 * no child does. `castellan dev` tells it, over a pipe on its stdin, which
 * process groups it started (`+PGID` / `-PGID` lines) and says `done` after a
 * clean stop. If the pipe closes without `done` (castellan dev was killed with
 * -9 or crashed), the reaper stops every group still listed: SIGTERM, then
 * SIGKILL after a grace period. It runs in its own process group and ignores
 * a terminal's SIGINT/SIGHUP, which are castellan dev's to handle.
 *
 * Run as a script: `node local/dev/reaper.ts [graceMs]`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** Signals a process group; false when it no longer exists. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** The reaper's side: reads the pipe until `done` or its end. */
function runReaper(graceMs: number): void {
  for (const s of ['SIGINT', 'SIGHUP'] as const) process.on(s, () => undefined);
  const groups = new Set<number>();
  let done = false;
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const pgid = Number(line.slice(1));
    if (line === 'done') {
      done = true;
      process.exit(0);
    } else if (line.startsWith('+') && Number.isInteger(pgid) && pgid > 1) {
      groups.add(pgid);
    } else if (line.startsWith('-')) {
      groups.delete(pgid);
    }
  });
  rl.on('close', () => {
    if (done) return;
    const alive = [...groups].filter((g) => signalGroup(g, 'SIGCONT') && signalGroup(g, 'SIGTERM'));
    if (alive.length === 0) process.exit(0);
    const deadline = Date.now() + graceMs;
    const timer = setInterval(() => {
      const left = alive.filter((g) => signalGroup(g, 0));
      if (left.length === 0 || Date.now() > deadline) {
        for (const g of left) signalGroup(g, 'SIGKILL');
        clearInterval(timer);
        process.exit(0);
      }
    }, 100);
  });
}

/** castellan dev's side: starts the reaper and keeps it informed. */
export class Reaper {
  private readonly child: ChildProcess;
  private closed = false;

  private constructor(child: ChildProcess) {
    this.child = child;
    // The reaper must never stop castellan dev from writing (a dead reaper is only a lost safety net).
    child.stdin?.on('error', () => undefined);
  }

  static start(graceMs = 5_000): Reaper {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', fileURLToPath(import.meta.url), String(graceMs)], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
    child.unref();
    return new Reaper(child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  add(pgid: number): void {
    if (!this.closed) this.child.stdin?.write(`+${pgid}\n`);
  }

  remove(pgid: number): void {
    if (!this.closed) this.child.stdin?.write(`-${pgid}\n`);
  }

  /** Everything was stopped cleanly: the reaper exits without touching anything. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.child.stdin?.end('done\n');
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  runReaper(Number(process.argv[2] ?? '5000'));
}
