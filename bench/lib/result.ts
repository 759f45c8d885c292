/**
 * The shape of `bench/results/latest.json` (SPEC §5) and helpers that build
 * results: every result carries its same-run baseline and the ratio
 * value / baseline.value; latency results carry p50/p99 on both sides.
 */
import { distribution, round, type Distribution } from './stats.ts';
import { throughput, type LoadResult } from './load.ts';

export interface Baseline {
  name: string;
  value: number;
  p50?: number;
  p99?: number;
  dist?: Distribution;
}

export interface BenchResult {
  name: string;
  scenario: string;
  unit: string;
  value: number;
  baseline: Baseline;
  /** value / baseline.value */
  ratio: number;
  /** Whether a lower or a higher value is better. */
  better: 'lower' | 'higher';
  p50?: number;
  p99?: number;
  dist?: Distribution;
  /** The target for this number, and whether this run met it. */
  target?: { text: string; met: boolean };
  errors?: number;
  /** Extra measured numbers (CPU seconds per message, RSS…). */
  extra?: Record<string, number | string>;
  notes?: string;
}

export interface Skipped {
  scenario: string;
  reason: string;
}

export interface BenchReport {
  machine: Record<string, unknown>;
  mode: string;
  startedAt: string;
  durationSeconds: number;
  results: BenchResult[];
  skipped: Skipped[];
  /** Scenarios that failed with an error (their results are missing). */
  failed: Skipped[];
}

function ratio(value: number, base: number): number {
  if (!(base > 0) || !Number.isFinite(value)) throw new Error(`cannot form a ratio of ${value} to baseline ${base}`);
  return round(value / base);
}

export interface Target {
  text: string;
  /** Decides from the result whether the target is met. */
  met: (r: { value: number; ratio: number; p50?: number; p99?: number }) => boolean;
}

function withTarget(r: BenchResult, target?: Target): BenchResult {
  if (target !== undefined) r.target = { text: target.text, met: target.met(r) };
  return r;
}

/** A latency result: value = subject p50 (ms), ratio = p50 / baseline p50. */
export function latencyResult(
  scenario: string,
  name: string,
  subject: number[],
  baselineName: string,
  baseline: number[],
  opts: { target?: Target; errors?: number; notes?: string; extra?: Record<string, number | string> } = {},
): BenchResult {
  if (subject.length === 0) throw new Error(`${name}: no successful samples`);
  if (baseline.length === 0) throw new Error(`${name}: baseline "${baselineName}" has no successful samples`);
  const d = distribution(subject);
  const b = distribution(baseline);
  const r: BenchResult = {
    name,
    scenario,
    unit: 'ms',
    value: d.p50,
    baseline: { name: baselineName, value: b.p50, p50: b.p50, p99: b.p99, dist: b },
    ratio: ratio(d.p50, b.p50),
    better: 'lower',
    p50: d.p50,
    p99: d.p99,
    dist: d,
  };
  if (opts.errors !== undefined) r.errors = opts.errors;
  if (opts.notes !== undefined) r.notes = opts.notes;
  if (opts.extra !== undefined) r.extra = opts.extra;
  return withTarget(r, opts.target);
}

/** A throughput result from two load runs: value = subject ops/s, ratio = subject / baseline. */
export function throughputResult(
  scenario: string,
  name: string,
  subject: LoadResult,
  baselineName: string,
  baseline: LoadResult,
  opts: { unit?: string; target?: Target; notes?: string; extra?: Record<string, number | string> } = {},
): BenchResult {
  const v = round(throughput(subject), 1);
  const b = round(throughput(baseline), 1);
  if (subject.ops === 0) throw new Error(`${name}: no successful operations (${subject.firstError ?? 'no error recorded'})`);
  if (baseline.ops === 0) throw new Error(`${name}: baseline "${baselineName}" had no successful operations (${baseline.firstError ?? 'no error recorded'})`);
  const d = distribution(subject.latencies);
  const bd = distribution(baseline.latencies);
  const r: BenchResult = {
    name,
    scenario,
    unit: opts.unit ?? 'req/s',
    value: v,
    baseline: { name: baselineName, value: b, p50: bd.p50, p99: bd.p99 },
    ratio: ratio(v, b),
    better: 'higher',
    p50: d.p50,
    p99: d.p99,
    errors: subject.errors + baseline.errors,
  };
  if (opts.notes !== undefined) r.notes = opts.notes;
  if (opts.extra !== undefined) r.extra = opts.extra;
  return withTarget(r, opts.target);
}

/** A single measured quantity against a measured baseline quantity (memory, CPU). */
export function valueResult(
  scenario: string,
  name: string,
  unit: string,
  value: number,
  baselineName: string,
  baselineValue: number,
  opts: {
    better?: 'lower' | 'higher';
    target?: Target;
    notes?: string;
    extra?: Record<string, number | string>;
    /** For durations: the measured samples on each side (p50/p99 come from them; n may be 1). */
    samples?: { subject: number[]; baseline: number[] };
  } = {},
): BenchResult {
  const r: BenchResult = {
    name,
    scenario,
    unit,
    value: round(value, 2),
    baseline: { name: baselineName, value: round(baselineValue, 2) },
    ratio: ratio(value, baselineValue),
    better: opts.better ?? 'lower',
  };
  if (opts.samples !== undefined) {
    const d = distribution(opts.samples.subject);
    const b = distribution(opts.samples.baseline);
    Object.assign(r, { p50: d.p50, p99: d.p99, dist: d });
    Object.assign(r.baseline, { p50: b.p50, p99: b.p99, dist: b });
  }
  if (opts.notes !== undefined) r.notes = opts.notes;
  if (opts.extra !== undefined) r.extra = opts.extra;
  return withTarget(r, opts.target);
}

/** Fails a scenario when too many operations failed: a benchmark of errors is no benchmark. */
export function assertHealthy(what: string, r: LoadResult, maxErrorRate = 0.01): void {
  const total = r.ops + r.errors;
  if (total === 0 || r.errors / total > maxErrorRate) {
    throw new Error(`${what}: ${r.errors} of ${total} operations failed (first: ${r.firstError ?? 'none'})`);
  }
}
