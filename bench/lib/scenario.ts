/**
 * What a scenario gets from the runner (the environment, the sizes for the
 * chosen mode, shared fixtures) and what it returns (results, or a skip with
 * its reason — never a made-up number).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { BenchEnv } from './env.ts';
import type { ObjectsFixture } from './objects.ts';
import type { BenchResult } from './result.ts';

export type Mode = 'smoke' | 'quick' | 'full';

export interface Params {
  /** Sequential requests per latency measurement (split over the rounds). */
  latencyCount: number;
  /** Time per throughput measurement, ms (split over the rounds). */
  throughputMs: number;
  /** Alternating subject/baseline rounds per measurement. */
  rounds: number;
  /** In-flight requests for throughput runs. */
  concurrency: number;
  /** Kill -9 repetitions per failover measurement. */
  failoverIters: number;
  /** Active objects for the memory scenario. */
  memObjects: number;
  /** Key counts for the activation scenario. */
  activationKeys: number[];
  activationIters: number;
  /** Messages per queue measurement. */
  queueMessages: number;
}

export const params: Record<Mode, Params> = {
  smoke: { latencyCount: 20, throughputMs: 400, rounds: 1, concurrency: 4, failoverIters: 1, memObjects: 100, activationKeys: [50, 200], activationIters: 1, queueMessages: 20 },
  quick: { latencyCount: 400, throughputMs: 2_500, rounds: 2, concurrency: 32, failoverIters: 2, memObjects: 5_000, activationKeys: [1_000, 10_000, 100_000], activationIters: 2, queueMessages: 400 },
  full: { latencyCount: 3_000, throughputMs: 16_000, rounds: 4, concurrency: 32, failoverIters: 10, memObjects: 10_000, activationKeys: [1_000, 10_000, 100_000], activationIters: 6, queueMessages: 3_000 },
};

export interface Ctx {
  mode: Mode;
  p: Params;
  env: BenchEnv;
  /** The shared object class `bench`: 3 hosts and a client sidecar (started on first use). */
  objects(): Promise<ObjectsFixture>;
  /** The benchmark process's own NATS connection. */
  nc(): Promise<NatsConnection>;
  log(msg: string): void;
  /** Records a failure of part of the scenario (its other results still count). */
  fail(reason: string): void;
}

export interface Scenario {
  /** Short name (`--only` takes these). */
  name: string;
  title: string;
  run(ctx: Ctx): Promise<BenchResult[]>;
}

/** Thrown by a scenario whose feature this build does not have. */
export class SkipScenario extends Error {}
