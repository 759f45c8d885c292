/**
 * Input checks shared by the action handlers (pure): required parameters
 * (MissingParameter), numbers in range (InvalidParameterValue; the query
 * protocol sends them as strings), string lists and maps, message
 * attributes in the JSON protocol's shape, all through zod at the boundary.
 */
import { z } from 'zod';
import { formatZodIssues } from '../../common/errors.ts';
import { Sqs } from './errors.ts';
import type { MessageAttr } from './md5.ts';

export type Input = Record<string, unknown>;

export function need(input: Input, key: string): unknown {
  const v = input[key];
  if (v === undefined || v === null || v === '') throw Sqs.missingParameter(key);
  return v;
}

export function str(input: Input, key: string, required: true): string;
export function str(input: Input, key: string, required?: false): string | undefined;
export function str(input: Input, key: string, required = false): string | undefined {
  const v = required ? need(input, key) : input[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw Sqs.invalidParameterValue(`Value for parameter ${key} is invalid: expected a string.`);
  return v;
}

/** An integer parameter (number or numeric string) within [min, max]. */
export function int(input: Input, key: string, min: number, max: number, required = false): number | undefined {
  const v = required ? need(input, key) : input[key];
  if (v === undefined || v === null || v === '') return undefined;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw Sqs.invalidParameterValue(`Value ${String(v)} for parameter ${key} is invalid. Reason: must be an integer from ${min} to ${max}.`);
  }
  return n;
}

const stringList = z.array(z.string());
const stringMap = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String));

export function strings(input: Input, key: string): string[] | undefined {
  const v = input[key];
  if (v === undefined || v === null) return undefined;
  const r = stringList.safeParse(v);
  if (!r.success) throw Sqs.invalidParameterValue(`Value for parameter ${key} is invalid: ${formatZodIssues(r.error)}`);
  return r.data;
}

export function stringRecord(input: Input, key: string): Record<string, string> | undefined {
  const v = input[key];
  if (v === undefined || v === null) return undefined;
  const r = stringMap.safeParse(v);
  if (!r.success) throw Sqs.invalidParameterValue(`Value for parameter ${key} is invalid: ${formatZodIssues(r.error)}`);
  return r.data;
}

const base64 = z.string().regex(/^[A-Za-z0-9+/_-]*={0,2}$/, 'not base64');
const attrValue = z
  .object({
    DataType: z.string().optional(),
    StringValue: z.string().optional(),
    BinaryValue: base64.optional(),
    StringListValues: z.array(z.string()).optional(),
    BinaryListValues: z.array(base64).optional(),
  })
  .loose();
const attrMap = z.record(z.string(), attrValue);

/** Message attributes in the JSON protocol's shape (BinaryValue base64) → MessageAttr. */
export function messageAttrs(input: Input, key: string): Record<string, MessageAttr> | undefined {
  const v = input[key];
  if (v === undefined || v === null) return undefined;
  const r = attrMap.safeParse(v);
  if (!r.success) throw Sqs.invalidParameterValue(`Value for parameter ${key} is invalid: ${formatZodIssues(r.error)}`);
  const out: Record<string, MessageAttr> = {};
  for (const [name, a] of Object.entries(r.data)) {
    if ((a.StringListValues?.length ?? 0) > 0 || (a.BinaryListValues?.length ?? 0) > 0) {
      throw Sqs.invalidParameterValue(`Message attribute list values in SendMessage operation are not supported (attribute '${name}').`);
    }
    out[name] = {
      DataType: a.DataType ?? '',
      ...(a.StringValue === undefined ? {} : { StringValue: a.StringValue }),
      ...(a.BinaryValue === undefined ? {} : { BinaryValue: Buffer.from(a.BinaryValue, 'base64') }),
    };
  }
  return out;
}

/** Batch entries: present, at most 10, ids well-formed and distinct. */
export function batchEntries(input: Input, what: string): Input[] {
  const v = input.Entries;
  if (v === undefined || v === null || (Array.isArray(v) && v.length === 0)) throw Sqs.emptyBatch(what);
  if (!Array.isArray(v) || !v.every((e) => typeof e === 'object' && e !== null)) throw Sqs.invalidParameterValue('Value for parameter Entries is invalid: expected a list of entries.');
  if (v.length > 10) throw Sqs.tooManyEntries(v.length);
  const seen = new Set<string>();
  for (const e of v as Input[]) {
    const id = e.Id;
    if (id === undefined || id === null || id === '') throw Sqs.missingParameter('Id');
    if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,80}$/.test(id)) throw Sqs.invalidBatchEntryId();
    if (seen.has(id)) throw Sqs.idsNotDistinct(id);
    seen.add(id);
  }
  return v as Input[];
}
