/**
 * The protocol between sidecars and queue hosts: JSON over core NATS
 * request/reply on the host's RPC subject (names.ts). Every reply is either
 * `{ok:true,...}` or a SPEC-shaped error the caller can pass through.
 */
import type { StoredMessage } from './store.ts';

export type HostRequest =
  /** messageId/enqueuedAt: kept from the source queue when a message moves to its dead-letter queue. */
  | { op: 'enqueue'; body: string; attributes: Record<string, string>; delayMs: number; replicas: number; dedupId?: string; messageId?: string; enqueuedAt?: number }
  /** deadline: wall ms after which the copy must not be stored any more (the primary has given up on it). */
  | { op: 'replicate'; msg: StoredMessage; deadline?: number }
  | { op: 'receive'; max: number; visibilityMs: number }
  | { op: 'delete'; id: string }
  | { op: 'visibility'; id: string; receiveCount: number; visibilityMs: number }
  /** Holder → standbys, fire and forget: the latest receive count, invisibility and replica list. */
  | { op: 'state'; id: string; receiveCount: number; invisibleUntil: number; replicas?: string[] }
  /** Holder → one standby, answered once the standby stored them: receive counts, invisibility, replica lists. */
  | { op: 'states'; items: StateUpdate[] }
  | { op: 'stats' }
  | { op: 'purge'; before: number };

export interface StateUpdate {
  id: string;
  receiveCount: number;
  invisibleUntil: number;
  replicas?: string[];
}

export interface ReceivedMessage {
  messageId: string;
  body: string;
  attributes: Record<string, string>;
  receiveCount: number;
  enqueuedAt: number;
  replicas: string[];
  holder: string;
}

export interface HostStats {
  visible: number;
  inFlight: number;
  delayed: number;
  stored: number;
  oldestEnqueuedAt?: number;
}

export type HostReply =
  | { ok: true; messageId?: string; replicas?: string[]; messages?: ReceivedMessage[]; more?: boolean; deleted?: boolean; stats?: HostStats; purged?: number }
  | { ok: false; status: number; code: string; message: string; retryable: boolean };

export const encodeJson = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
export const decodeJson = <T>(d: Uint8Array): T => JSON.parse(new TextDecoder().decode(d)) as T;
