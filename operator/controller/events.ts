/**
 * Kubernetes Events about the custom resources (`kubectl describe dobj x`
 * shows them). The same event (object, type, reason, message) is recorded at
 * most once per 10 minutes, so a resource stuck in a failing reconcile does
 * not flood the API server. Recording never fails a reconcile.
 */
import type * as k8s from '@kubernetes/client-node';
import { describeError, type Logger } from '../../common/logger.ts';
import type { CustomResource } from '../api/resources.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventSink {
  createEvent(event: k8s.CoreV1Event): Promise<void>;
}

const dedupeMs = 10 * 60_000;

export class EventRecorder {
  private readonly sink: EventSink;
  private readonly component: string;
  private readonly instance: string;
  private readonly log: Logger;
  private readonly recent = new Map<string, number>();

  constructor(sink: EventSink, component: string, instance: string, log: Logger) {
    this.sink = sink;
    this.component = component;
    this.instance = instance;
    this.log = log;
  }

  record(cr: CustomResource, type: EventType, reason: string, message: string): void {
    const key = `${cr.metadata.uid}\u0000${type}\u0000${reason}\u0000${message}`;
    const now = Date.now();
    const last = this.recent.get(key);
    if (last !== undefined && now - last < dedupeMs) return;
    this.recent.set(key, now);
    if (this.recent.size > 10_000) {
      for (const [k, t] of this.recent) if (now - t >= dedupeMs) this.recent.delete(k);
    }
    const at = new Date(now);
    const event: k8s.CoreV1Event = {
      metadata: { generateName: `${cr.metadata.name}.`, namespace: cr.metadata.namespace },
      involvedObject: {
        apiVersion: cr.apiVersion,
        kind: cr.kind,
        name: cr.metadata.name,
        namespace: cr.metadata.namespace,
        uid: cr.metadata.uid,
        resourceVersion: cr.metadata.resourceVersion,
      },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: this.instance,
      firstTimestamp: at,
      lastTimestamp: at,
      count: 1,
    };
    this.sink.createEvent(event).catch((err: unknown) => this.log.warn('could not record event', { reason, error: describeError(err) }));
  }
}
