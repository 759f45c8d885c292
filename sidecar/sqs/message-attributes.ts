/**
 * SQS message attributes (String, Number, Binary, each with an optional
 * `.custom` type suffix) carried through the native queue's string
 * attribute map (pure):
 * - an attribute of type exactly `String` is stored as itself (`name → value`),
 *   so native consumers (SPEC §2.3) see it unchanged;
 * - any other type is stored as `name → value` (Binary as base64) plus its
 *   type in the reserved attribute `castellan.sqs.types` (JSON `{name: type}`).
 * Native attributes sent without SQS read back as String attributes.
 * Also validation as SQS does it (names, types, values, at most 10).
 */
import type { MessageAttr } from './md5.ts';
import { Sqs } from './errors.ts';

export const TYPES_KEY = 'castellan.sqs.types';
/** Reserved: the AWSTraceHeader message system attribute. */
export const TRACE_KEY = 'castellan.sqs.trace';
/** Native attributes under this prefix are SQS bookkeeping, never user attributes. */
const RESERVED_PREFIX = 'castellan.sqs.';
/** The Castellan message attribute choosing the replica count of one message (SPEC §2.5). */
export const REPLICAS_ATTRIBUTE = 'castellan.replicas';
const MAX_ATTRIBUTES = 10;

const namePattern = /^[A-Za-z0-9_.-]{1,256}$/;
const typePattern = /^(String|Number|Binary)(\.[A-Za-z0-9_.-]+)?$/;
/** SQS Number: up to 38 significant digits, -10^128 to 10^126. */
const numberPattern = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Characters SQS allows in bodies and string values (XML 1.0 characters). */
export function validText(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return !/[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u.test(s);
}

export function validateMessageAttributes(attrs: Record<string, MessageAttr> | undefined, what = 'Message'): void {
  if (attrs === undefined) return;
  const names = Object.keys(attrs);
  if (names.length > MAX_ATTRIBUTES) {
    throw Sqs.invalidParameterValue(`Number of message attributes [${names.length}] exceeds the allowed maximum [${MAX_ATTRIBUTES}].`);
  }
  for (const name of names) {
    const a = attrs[name] as MessageAttr;
    if (!namePattern.test(name) || name.startsWith('.') || name.endsWith('.') || name.includes('..') || /^(aws\.|amazon\.)/i.test(name) || name.startsWith(RESERVED_PREFIX)) {
      throw Sqs.invalidParameterValue(`${what} (user) attribute name '${name}' is invalid. Names may contain A-Z, a-z, 0-9, underscore, hyphen and period, at most 256 characters, not start with AWS. or Amazon., and not start or end with a period or contain two in a row.`);
    }
    if (typeof a.DataType !== 'string' || a.DataType === '') throw Sqs.invalidParameterValue(`The message attribute '${name}' must contain a non-empty message attribute type.`);
    if (!typePattern.test(a.DataType) || a.DataType.length > 256) {
      throw Sqs.invalidParameterValue(`The type of message (user) attribute '${name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String.`);
    }
    if (a.DataType.startsWith('Binary')) {
      if (a.BinaryValue === undefined || a.BinaryValue.length === 0) throw Sqs.invalidParameterValue(`The message attribute '${name}' with type 'Binary' must use field 'Binary'.`);
      if (a.StringValue !== undefined) throw Sqs.invalidParameterValue(`The message attribute '${name}' with type 'Binary' must not contain a StringValue.`);
    } else {
      const kind = a.DataType.startsWith('Number') ? 'Number' : 'String';
      if (a.StringValue === undefined || a.StringValue === '') throw Sqs.invalidParameterValue(`The message attribute '${name}' must contain non-empty message attribute value for message attribute type '${kind}'.`);
      if (a.BinaryValue !== undefined) throw Sqs.invalidParameterValue(`The message attribute '${name}' with type '${kind}' must use field 'String'.`);
      if (!validText(a.StringValue)) throw Sqs.invalidParameterValue(`The message attribute '${name}' contains characters outside the allowed set.`);
      if (kind === 'Number' && !validNumber(a.StringValue)) {
        throw Sqs.invalidParameterValue(`Can't cast the value of message (user) attribute '${name}' to a number.`);
      }
    }
  }
}

function validNumber(s: string): boolean {
  if (!numberPattern.test(s.trim())) return false;
  const digits = s.replace(/[eE].*$/, '').replace(/[^0-9]/g, '').replace(/^0+/, '');
  if (digits.length > 38) return false;
  const v = Number(s);
  return Number.isFinite(v) && Math.abs(v) <= 1e126 && v >= -1e128;
}

/** Bytes SQS counts for the attributes: name + type + value. */
export function attributesSize(attrs: Record<string, MessageAttr> | undefined): number {
  let n = 0;
  for (const [name, a] of Object.entries(attrs ?? {})) {
    n += Buffer.byteLength(name, 'utf8') + Buffer.byteLength(a.DataType, 'utf8');
    n += a.BinaryValue !== undefined ? a.BinaryValue.length : Buffer.byteLength(a.StringValue ?? '', 'utf8');
  }
  return n;
}

/** SQS attributes → the native attribute map. */
export function encodeAttributes(attrs: Record<string, MessageAttr> | undefined): Record<string, string> | undefined {
  if (attrs === undefined || Object.keys(attrs).length === 0) return undefined;
  const out: Record<string, string> = {};
  const types: Record<string, string> = {};
  for (const [name, a] of Object.entries(attrs)) {
    if (a.DataType.startsWith('Binary')) out[name] = (a.BinaryValue ?? Buffer.alloc(0)).toString('base64');
    else out[name] = a.StringValue ?? '';
    if (a.DataType !== 'String') types[name] = a.DataType;
  }
  if (Object.keys(types).length > 0) out[TYPES_KEY] = JSON.stringify(types);
  return out;
}

/** The native attribute map → SQS attributes (native-only attributes read as String). */
export function decodeAttributes(native: Record<string, string> | undefined): Record<string, MessageAttr> {
  const out: Record<string, MessageAttr> = {};
  if (native === undefined) return out;
  let types: Record<string, string> = {};
  const raw = native[TYPES_KEY];
  if (raw !== undefined) {
    try {
      const parsed = JSON.parse(raw) as unknown;
      if (typeof parsed === 'object' && parsed !== null) types = parsed as Record<string, string>;
    } catch {
      types = {};
    }
  }
  for (const [name, value] of Object.entries(native)) {
    if (name.startsWith(RESERVED_PREFIX)) continue;
    const type = typeof types[name] === 'string' ? (types[name] as string) : 'String';
    out[name] = type.startsWith('Binary') ? { DataType: type, BinaryValue: Buffer.from(value, 'base64') } : { DataType: type, StringValue: value };
  }
  return out;
}

/**
 * The attributes a receive asks for: `All`, `.*`, exact names and `prefix.*`
 * patterns. Undefined or empty → none.
 */
export function selectAttributes(attrs: Record<string, MessageAttr>, wanted: readonly string[] | undefined): Record<string, MessageAttr> {
  if (wanted === undefined || wanted.length === 0) return {};
  if (wanted.includes('All') || wanted.includes('.*')) return attrs;
  const out: Record<string, MessageAttr> = {};
  for (const [name, a] of Object.entries(attrs)) {
    if (wanted.some((w) => w === name || (w.endsWith('.*') && name.startsWith(w.slice(0, -1))))) out[name] = a;
  }
  return out;
}
