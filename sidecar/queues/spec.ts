/**
 * A queue's settings (the ReplicatedQueue spec as the sidecar needs it), the
 * config record every sidecar reads from NATS to learn them, and the SPEC
 * limits shared by validation everywhere.
 */
import { z } from 'zod';

export const LIMITS = {
  maxReplicas: 5,
  maxMessageBytes: 1_048_576,
  maxRetentionMs: 14 * 86_400_000,
  maxDelayMs: 15 * 60_000,
  maxWaitSeconds: 20,
  maxReceiveMessages: 10,
  maxVisibilitySeconds: 12 * 3600,
  maxBatch: 100,
  dedupWindowMs: 5 * 60_000,
  maxAttributes: 32,
  maxDedupIdChars: 128,
} as const;

export interface DeadLetter {
  queue: string;
  maxReceiveCount: number;
}

/** What a queue is: written as the config record, read by every sidecar. */
export interface QueueSpec {
  name: string;
  /** Configured queue-host count (pods `<name>-0 … <name>-(hosts-1)`). */
  hosts: number;
  replicaCount: number;
  visibilityTimeoutMs: number;
  messageRetentionMs: number;
  maxMessageBytes: number;
  delayMs: number;
  deadLetter?: DeadLetter;
}

export const queueSpecSchema = z
  .object({
    name: z.string().min(1),
    hosts: z.number().int().min(1).max(1000),
    replicaCount: z.number().int().min(1).max(LIMITS.maxReplicas),
    visibilityTimeoutMs: z.number().int().min(0).max(LIMITS.maxVisibilitySeconds * 1000),
    messageRetentionMs: z.number().int().min(1000).max(LIMITS.maxRetentionMs),
    maxMessageBytes: z.number().int().min(1).max(LIMITS.maxMessageBytes),
    delayMs: z.number().int().min(0).max(LIMITS.maxDelayMs),
    deadLetter: z.object({ queue: z.string().min(1), maxReceiveCount: z.number().int().min(1) }).optional(),
  })
  .refine((s) => s.replicaCount <= s.hosts, { message: 'replicaCount must be at most hosts', path: ['replicaCount'] });

/** The config record on `<base>.meta.config`. */
export interface ConfigRecord {
  v: 1;
  spec: QueueSpec;
  /** Who wrote it (pod or `operator`) and when (wall ms), informational. */
  by: string;
  ts: number;
}

export const defaultSpec = (name: string): QueueSpec => ({
  name,
  hosts: 3,
  replicaCount: 2,
  visibilityTimeoutMs: 30_000,
  messageRetentionMs: 4 * 86_400_000,
  maxMessageBytes: 262_144,
  delayMs: 0,
});

/** Pod names of the configured hosts (StatefulSet ordinals). */
export function hostPods(spec: Pick<QueueSpec, 'name' | 'hosts'>): string[] {
  return Array.from({ length: spec.hosts }, (_, i) => `${spec.name}-${i}`);
}
