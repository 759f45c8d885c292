/**
 * Closed-loop load: `concurrency` workers each issue one operation, wait for
 * it, and issue the next, for a duration or a count. `compare` alternates
 * rounds of the subject and its baseline so that drift in machine load (the
 * benchmark machine is shared) hits both sides alike.
 */

export type Op = (i: number) => Promise<unknown>;

export interface LoadResult {
  /** Latency of every successful operation (ms). */
  latencies: number[];
  ops: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
}

export interface LoadOptions {
  concurrency: number;
  /** Stop issuing after this long (ms)… */
  durationMs?: number;
  /** …or after this many operations (whichever comes first). */
  count?: number;
}

export async function closedLoop(op: Op, opts: LoadOptions): Promise<LoadResult> {
  if (opts.durationMs === undefined && opts.count === undefined) throw new Error('closedLoop needs durationMs or count');
  const latencies: number[] = [];
  let issued = 0;
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const end = start + (opts.durationMs ?? Number.POSITIVE_INFINITY);
  const limit = opts.count ?? Number.POSITIVE_INFINITY;
  const worker = async () => {
    while (issued < limit && performance.now() < end) {
      const i = issued++;
      const t0 = performance.now();
      try {
        await op(i);
        latencies.push(performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker));
  const r: LoadResult = { latencies, ops: latencies.length, errors, elapsedMs: performance.now() - start };
  if (firstError !== undefined) r.firstError = firstError;
  return r;
}

function merge(a: LoadResult, b: LoadResult): LoadResult {
  const r: LoadResult = { latencies: a.latencies.concat(b.latencies), ops: a.ops + b.ops, errors: a.errors + b.errors, elapsedMs: a.elapsedMs + b.elapsedMs };
  const fe = a.firstError ?? b.firstError;
  if (fe !== undefined) r.firstError = fe;
  return r;
}

const empty = (): LoadResult => ({ latencies: [], ops: 0, errors: 0, elapsedMs: 0 });

/** Runs subject and baseline in `rounds` alternating rounds (baseline first), each with 1/rounds of the budget. */
export async function compare(
  subject: Op,
  baseline: Op,
  opts: LoadOptions & {
    rounds: number;
    warmup?: number;
    /** Cumulative CPU seconds of the processes serving each side, by part; their deltas over the measured rounds are returned. */
    cpu?: { subject: () => CpuParts; baseline: () => CpuParts };
  },
): Promise<{ subject: LoadResult; baseline: LoadResult; cpuSeconds: { subject: CpuParts; baseline: CpuParts } }> {
  const warm = opts.warmup ?? 0;
  if (warm > 0) {
    await closedLoop(baseline, { concurrency: opts.concurrency, count: warm });
    await closedLoop(subject, { concurrency: opts.concurrency, count: warm });
  }
  const per: LoadOptions = { concurrency: opts.concurrency };
  if (opts.durationMs !== undefined) per.durationMs = opts.durationMs / opts.rounds;
  if (opts.count !== undefined) per.count = Math.max(1, Math.ceil(opts.count / opts.rounds));
  let s = empty();
  let b = empty();
  let offset = 0;
  const cpuSeconds: { subject: CpuParts; baseline: CpuParts } = { subject: {}, baseline: {} };
  for (let r = 0; r < opts.rounds; r++) {
    const base = offset;
    const b0 = opts.cpu?.baseline() ?? {};
    b = merge(b, await closedLoop((i) => baseline(base + i), per));
    addDelta(cpuSeconds.baseline, b0, opts.cpu?.baseline() ?? {});
    const s0 = opts.cpu?.subject() ?? {};
    s = merge(s, await closedLoop((i) => subject(base + i), per));
    addDelta(cpuSeconds.subject, s0, opts.cpu?.subject() ?? {});
    offset += per.count ?? 1_000_000;
  }
  return { subject: s, baseline: b, cpuSeconds };
}

/** CPU seconds by part (say `client sidecar`, `nats`). */
export type CpuParts = Record<string, number>;

function addDelta(into: CpuParts, before: CpuParts, after: CpuParts): void {
  for (const [k, v] of Object.entries(after)) into[k] = (into[k] ?? 0) + v - (before[k] ?? 0);
}

/** Operations per second of a load result. */
export function throughput(r: LoadResult): number {
  return r.elapsedMs > 0 ? (r.ops * 1000) / r.elapsedMs : 0;
}
