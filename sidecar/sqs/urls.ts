/**
 * Queue URLs and ARNs (SPEC §2.5, pure): a queue URL is
 * `http://<Host header>/sqs/{namespace}/{queue}`, an ARN
 * `arn:aws:sqs:castellan:{namespace}:{queue}`. Parsing accepts any scheme and
 * host (clients keep URLs built by another sidecar or with another host name)
 * but only this sidecar's namespace: another namespace's queue does not exist
 * from here.
 *
 * SQS queue names (`[A-Za-z0-9_-]{1,80}`) are not all Kubernetes names, which
 * native queues have: a name that is one (and does not start with `x-`) is
 * used as it is; any other is stored as `x-<base32hex of its UTF-8>` (lowercase
 * letters and digits). The mapping is one-to-one, so URLs, ARNs and ListQueues
 * always show the SQS name. Functions here take and return native names.
 */
import { base32Decode, base32Encode, base32HexLower } from '../../common/base32.ts';
import { isValidQueueName } from '../queues/names.ts';
import { Sqs } from './errors.ts';

/** The native queue name of an SQS queue name. */
export function nativeName(sqsName: string): string {
  return isValidQueueName(sqsName) && !sqsName.startsWith('x-') ? sqsName : `x-${base32Encode(Buffer.from(sqsName, 'utf8'), base32HexLower)}`;
}

/** The SQS queue name of a native queue name. */
export function sqsName(native: string): string {
  if (!native.startsWith('x-')) return native;
  const decoded = base32Decode(native.slice(2), base32HexLower);
  return decoded === undefined ? native : Buffer.from(decoded).toString('utf8');
}

export function queueUrl(host: string, namespace: string, queue: string): string {
  return `http://${host}/sqs/${encodeURIComponent(namespace)}/${encodeURIComponent(sqsName(queue))}`;
}

export function queueArn(namespace: string, queue: string): string {
  return `arn:aws:sqs:castellan:${namespace}:${sqsName(queue)}`;
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
  return nativeName(q);
}

/** The queue name of an ARN of this namespace; undefined when it is not one. */
export function queueFromArn(arn: string, namespace: string): string | undefined {
  const m = /^arn:aws:sqs:[^:]*:([^:]+):([^:]+)$/.exec(arn);
  if (m === null || m[1] !== namespace) return undefined;
  return nativeName(m[2] as string);
}
