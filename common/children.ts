/**
 * Child processes that must not outlive this one.
 *
 * Everything Castellan spawns (nats-server, sidecars, apps, control-plane
 * binaries) is registered here; on exit or a fatal signal the survivors are
 * killed, so a crashed test run or CLI leaves no orphans behind.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';

const live = new Set<ChildProcess>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        if (child.pid !== undefined) {
          process.kill(child.pid, 'SIGCONT');
          process.kill(child.pid, 'SIGKILL');
        }
      } catch {
        // already gone: nothing to clean up
      }
    }
  });
}

/** spawn() whose child is killed if this process exits first. */
export function spawnOwned(command: string, args: string[], opts: SpawnOptions): ChildProcess {
  hookExit();
  const child = spawn(command, args, opts);
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
  return child;
}

/** Resolves when the child has exited (immediately if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Stops a child: SIGCONT (in case it is stopped), then `signal`, then SIGKILL
 * after `graceMs`. Resolves once it is gone.
 */
export async function terminate(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const done = exited(child);
  try {
    process.kill(child.pid, 'SIGCONT');
    process.kill(child.pid, signal);
  } catch {
    return done;
  }
  const timer = setTimeout(() => {
    try {
      child.kill('SIGKILL');
    } catch {
      // exited in between
    }
  }, graceMs);
  await done;
  clearTimeout(timer);
}

/** Alive and not a zombie (a reaped-late child still answers kill 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false; // gone between the two looks
  }
}
