/**
 * The checksums SQS returns and SDKs verify (pure):
 * - MD5OfMessageBody: MD5 (hex) of the body's UTF-8 bytes.
 * - MD5OfMessageAttributes: MD5 (hex) over the attributes sorted by name
 *   (UTF-16 code unit order, as Java's String ordering in the SDKs), each
 *   encoded as: name, DataType (each a 4-byte big-endian length + UTF-8
 *   bytes), one transport byte (1 for String/Number types, 2 for Binary), then
 *   the value (4-byte length + UTF-8 bytes, or the raw binary bytes).
 *   Absent when there are no attributes, as SQS does.
 * The same encoding covers message system attributes (AWSTraceHeader).
 */
import { createHash } from 'node:crypto';

export interface MessageAttr {
  DataType: string;
  StringValue?: string;
  BinaryValue?: Buffer;
}

export function md5Hex(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

function lengthPrefixed(bytes: Buffer): Buffer[] {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length, 0);
  return [len, bytes];
}

export function md5OfAttributes(attrs: Record<string, MessageAttr> | undefined): string | undefined {
  if (attrs === undefined) return undefined;
  const names = Object.keys(attrs).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (names.length === 0) return undefined;
  const parts: Buffer[] = [];
  for (const name of names) {
    const a = attrs[name] as MessageAttr;
    parts.push(...lengthPrefixed(Buffer.from(name, 'utf8')), ...lengthPrefixed(Buffer.from(a.DataType, 'utf8')));
    if (a.DataType.startsWith('Binary')) {
      parts.push(Buffer.from([2]), ...lengthPrefixed(a.BinaryValue ?? Buffer.alloc(0)));
    } else {
      parts.push(Buffer.from([1]), ...lengthPrefixed(Buffer.from(a.StringValue ?? '', 'utf8')));
    }
  }
  return md5Hex(Buffer.concat(parts));
}
