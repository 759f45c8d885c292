/**
 * Answers in both SQS wire protocols (pure text building; the route writes it):
 * - JSON protocol: the action's output object as JSON
 *   (`application/x-amz-json-1.0`); errors `{"__type":"com.amazonaws.sqs#Name","message"}`
 *   with `x-amzn-query-error: <query code>;Sender|Receiver`.
 * - Query protocol: `<ActionResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/">`
 *   with `<ActionResult>` and `<ResponseMetadata><RequestId>`; errors
 *   `<ErrorResponse><Error><Type/><Code/><Message/><Detail/></Error><RequestId/></ErrorResponse>`.
 * The output objects use the JSON protocol's member names; the XML writer
 * knows the few places where the query protocol names or shapes them
 * differently (lists flattened under singular names, maps as Name/Value).
 */
import type { SqsError } from './errors.ts';

export const XMLNS = 'http://queue.amazonaws.com/doc/2012-11-05/';

export interface Rendered {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"'\r]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;', '\r': '&#xD;' })[c] as string);
}

const el = (name: string, inner: string) => `<${name}>${inner}</${name}>`;

/** Flattened lists: JSON member → the element each item becomes. */
function listElement(action: string, key: string): string | undefined {
  switch (key) {
    case 'Messages':
      return 'Message';
    case 'QueueUrls':
    case 'queueUrls':
      return 'QueueUrl';
    case 'Successful':
      return `${action}ResultEntry`;
    case 'Failed':
      return 'BatchResultErrorEntry';
    default:
      return undefined;
  }
}

function value(action: string, key: string, v: unknown): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) {
    const item = listElement(action, key) ?? key;
    return v.map((x) => el(item, fields(action, x))).join('');
  }
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (key === 'Attributes') return Object.entries(o).map(([n, x]) => el('Attribute', el('Name', escapeXml(n)) + el('Value', escapeXml(String(x))))).join('');
    if (key === 'Tags') return Object.entries(o).map(([n, x]) => el('Tag', el('Key', escapeXml(n)) + el('Value', escapeXml(String(x))))).join('');
    if (key === 'MessageAttributes') {
      return Object.entries(o)
        .map(([n, x]) => el('MessageAttribute', el('Name', escapeXml(n)) + el('Value', fields(action, x))))
        .join('');
    }
    return el(key, fields(action, o));
  }
  return el(key, escapeXml(String(v)));
}

function fields(action: string, o: unknown): string {
  if (typeof o !== 'object' || o === null) return escapeXml(String(o));
  return Object.entries(o as Record<string, unknown>)
    .map(([k, v]) => value(action, k, v))
    .join('');
}

export function renderJson(output: Record<string, unknown>, requestId: string): Rendered {
  return { status: 200, headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': requestId }, body: JSON.stringify(output) };
}

export function renderXml(action: string, output: Record<string, unknown>, requestId: string): Rendered {
  const result = Object.keys(output).length === 0 ? '' : el(`${action}Result`, fields(action, output));
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${XMLNS}">${result}${el('ResponseMetadata', el('RequestId', requestId))}</${action}Response>`;
  return { status: 200, headers: { 'content-type': 'text/xml', 'x-amzn-requestid': requestId }, body };
}

export function renderJsonError(e: SqsError, requestId: string): Rendered {
  return {
    status: e.status,
    headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': requestId, 'x-amzn-query-error': `${e.code};${e.fault}` },
    body: JSON.stringify({ __type: `com.amazonaws.sqs#${e.type}`, message: e.message }),
  };
}

export function renderXmlError(e: SqsError, requestId: string): Rendered {
  const body =
    `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="${XMLNS}">` +
    el('Error', el('Type', e.fault) + el('Code', escapeXml(e.code)) + el('Message', escapeXml(e.message)) + '<Detail/>') +
    el('RequestId', requestId) +
    '</ErrorResponse>';
  return { status: e.status, headers: { 'content-type': 'text/xml', 'x-amzn-requestid': requestId }, body };
}
