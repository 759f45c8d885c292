/**
 * Queue URLs and ARNs (SPEC §2.5, pure): a queue URL is
 * `http://<Host header>/sqs/{namespace}/{queue}`, an ARN
 * `arn:aws:sqs:castellan:{namespace}:{queue}`. Parsing accepts any scheme and
 * host (clients keep URLs built by another sidecar or with another host name)
 * but only this sidecar's namespace: another namespace's queue does not exist
 * from here.
 */
import { Sqs } from './errors.ts';

export function queueUrl(host: string, namespace: string, queue: string): string {
  return `http://${host}/sqs/${encodeURIComponent(namespace)}/${encodeURIComponent(queue)}`;
}

export function queueArn(namespace: string, queue: string): string {
  return `arn:aws:sqs:castellan:${namespace}:${queue}`;
}

/** The queue name of a URL (absolute, or a path `/sqs/ns/q`). */
export function queueFromUrl(url: string, namespace: string): string {
  let path: string;
  try {
    path = new URL(url, 'http://localhost').pathname;
  } catch {
    throw Sqs.invalidAddress(`The address ${url} is not valid for this endpoint.`);
  }
  const m = /^\/sqs\/([^/]+)\/([^/]+)\/?$/.exec(path);
  if (m === null) throw Sqs.invalidAddress(`The address ${url} is not valid for this endpoint (expected http://<host>/sqs/<namespace>/<queue>).`);
  const [ns, q] = [decodeURIComponent(m[1] as string), decodeURIComponent(m[2] as string)];
  if (ns !== namespace) throw Sqs.nonExistentQueue(`The specified queue does not exist: namespace "${ns}" is not this sidecar's namespace "${namespace}".`);
  return q;
}

/** The queue name of an ARN of this namespace; undefined when it is not one. */
export function queueFromArn(arn: string, namespace: string): string | undefined {
  const m = /^arn:aws:sqs:[^:]*:([^:]+):([^:]+)$/.exec(arn);
  if (m === null || m[1] !== namespace) return undefined;
  return m[2];
}
