/**
 * `castellan objects list|get|delete`: see the objects of a class through a
 * running sidecar (SPEC §2.6, §5). Tables for people by default, `-o json`
 * for scripts. `list` pages through the whole class (or `--limit` objects),
 * following the API's cursor.
 */
import { describeFailure, request, RequestFailed, sidecarHelp, sidecarUrl } from '../sidecar-client.ts';
import { parseFlags, UsageError } from '../usage.ts';

export const help = `Usage: castellan objects <action> ... [options]

Lists, inspects and deletes the durable objects of a class (those with storage or an alarm).

Actions:
  list <class>               the objects of <class>, in id order (UTF-8 bytes)
      --prefix P               only ids starting with P
      --limit N                at most N objects (default: all of them)
      --after CURSOR           start after this cursor (the "next" of a JSON listing)
  get <class>/<id>           one object: summary, alarm, host, and its keys with values
      --keys N                 show at most N keys (default 100)
  delete <class>/<id>        delete the object's storage and alarm (through its owner)

Options:
  -o, --output table|json  output format (default table)
${sidecarHelp}
  -h, --help             show this help

Exit codes: 0 success, 1 the sidecar refused (the error is printed on stderr), 2 bad usage.

Examples:
  castellan objects list counter
  castellan objects list counter --prefix user- --limit 20 -o json
  castellan objects get counter/alice
  castellan objects delete counter/alice`;

interface Listed {
  id: string;
  keys: number;
  bytes: number;
  alarm: number | null;
  host: string | null;
  lastWrite: string | null;
}

interface KeyEntry {
  key: string;
  value: string;
  version: number;
}

const classPattern = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function parseClass(raw: string | undefined): string {
  if (raw === undefined || raw === '') throw new UsageError(`missing the class\n\n${help}`);
  if (!classPattern.test(raw)) throw new UsageError(`"${raw}" is not a class name`);
  return raw;
}

/** `class/id`: the id is everything after the first `/` (ids may contain `/`). */
export function parseTarget(raw: string | undefined): { cls: string; id: string } {
  if (raw === undefined) throw new UsageError(`expected <class>/<id>\n\n${help}`);
  const slash = raw.indexOf('/');
  if (slash <= 0 || slash === raw.length - 1) throw new UsageError(`"${raw}" is not <class>/<id>`);
  return { cls: parseClass(raw.slice(0, slash)), id: raw.slice(slash + 1) };
}

/** An id or key for a table cell: as it is when printable, else JSON-quoted. */
function cell(s: string): string {
  return /^[^\s\p{C}"]+$/u.test(s) ? s : JSON.stringify(s);
}

function time(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString();
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => [...r[c]!].length)));
  return rows.map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]!))).join('  ')).join('\n');
}

export function objectsTable(objects: readonly Listed[]): string {
  return table([
    ['ID', 'KEYS', 'BYTES', 'ALARM', 'HOST', 'LAST WRITE'],
    ...objects.map((o) => [cell(o.id), String(o.keys), String(o.bytes), time(o.alarm), o.host ?? '-', o.lastWrite ?? '-']),
  ]);
}

function preview(b64: string): string {
  const buf = Buffer.from(b64, 'base64');
  const text = buf.toString('utf8');
  const printable = Buffer.from(text, 'utf8').equals(buf) && !/[\p{Cc}]/u.test(text.replace(/[\n\t]/g, ''));
  const shown = printable ? JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text) : `<${buf.length} bytes>`;
  return shown;
}

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(
    argv,
    {
      prefix: { type: 'string' },
      limit: { type: 'string' },
      after: { type: 'string' },
      keys: { type: 'string' },
      output: { type: 'string', short: 'o' },
      sidecar: { type: 'string' },
    },
    help,
    true,
  );
  if (flags === undefined) return 0;
  const v = flags.values;
  const [action, target, ...extra] = flags.positionals;
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}\n\n${help}`);
  const output = v.output ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`-o must be table or json, got "${output}"`);
  const positive = (name: string, raw: string | undefined): number | undefined => {
    if (raw === undefined) return undefined;
    if (!/^\d{1,9}$/.test(raw) || Number(raw) < 1) throw new UsageError(`--${name} must be a positive integer, got "${raw}"`);
    return Number(raw);
  };
  const base = sidecarUrl(v.sidecar);
  const get = async (method: string, path: string): Promise<unknown> => {
    const res = await request(base, method, path);
    if (res.status >= 400) throw new RequestFailed(describeFailure(res));
    return res.body.length === 0 ? undefined : (JSON.parse(res.body.toString('utf8')) as unknown);
  };

  try {
    switch (action) {
      case 'list': {
        const cls = parseClass(target);
        const limit = positive('limit', v.limit);
        const objects: Listed[] = [];
        let after = v.after;
        let next: string | null = null;
        for (;;) {
          const want = limit === undefined ? 1000 : Math.min(1000, limit - objects.length);
          const q = new URLSearchParams({ limit: String(want) });
          if (v.prefix !== undefined) q.set('prefix', v.prefix);
          if (after !== undefined) q.set('after', after);
          const page = (await get('GET', `/v1/classes/${encodeURIComponent(cls)}/objects?${q.toString()}`)) as { objects: Listed[]; next: string | null };
          objects.push(...page.objects);
          next = page.next;
          if (next === null || (limit !== undefined && objects.length >= limit)) break;
          after = next;
        }
        if (output === 'json') process.stdout.write(`${JSON.stringify({ objects, next }, null, 2)}\n`);
        else process.stdout.write(`${objectsTable(objects)}\n${next === null ? '' : `(more: --after ${next})\n`}`);
        return 0;
      }
      case 'get': {
        const { cls, id } = parseTarget(target);
        const path = `/v1/classes/${encodeURIComponent(cls)}/objects/${encodeURIComponent(id)}`;
        const max = positive('keys', v.keys) ?? 100;
        const summary = (await get('GET', path)) as Listed;
        const entries: KeyEntry[] = [];
        let next: string | null = null;
        let after: string | undefined;
        do {
          const q = new URLSearchParams({ limit: String(Math.min(1000, max - entries.length)), ...(after === undefined ? {} : { after }) });
          const page = (await get('GET', `${path}/keys?${q.toString()}`)) as { entries: KeyEntry[]; next: string | null };
          entries.push(...page.entries);
          next = page.next;
          after = next ?? undefined;
        } while (next !== null && entries.length < max);
        if (output === 'json') {
          process.stdout.write(`${JSON.stringify({ ...summary, entries, truncated: next !== null }, null, 2)}\n`);
          return 0;
        }
        const lines = [
          `id:          ${cell(summary.id)}`,
          `class:       ${cls}`,
          `keys:        ${summary.keys}`,
          `bytes:       ${summary.bytes}`,
          `alarm:       ${time(summary.alarm)}`,
          `host:        ${summary.host ?? '- (not active)'}`,
          `last write:  ${summary.lastWrite ?? '-'}`,
        ];
        if (entries.length > 0) {
          lines.push('', table([['KEY', 'VERSION', 'SIZE', 'VALUE'], ...entries.map((e) => [cell(e.key), String(e.version), String(Buffer.from(e.value, 'base64').length), preview(e.value)])]));
          if (next !== null) lines.push(`(${summary.keys - entries.length} more keys: --keys N)`);
        }
        process.stdout.write(`${lines.join('\n')}\n`);
        return 0;
      }
      case 'delete': {
        const { cls, id } = parseTarget(target);
        await get('DELETE', `/v1/classes/${encodeURIComponent(cls)}/objects/${encodeURIComponent(id)}`);
        if (output === 'json') process.stdout.write(`${JSON.stringify({ deleted: true, class: cls, id })}\n`);
        else process.stdout.write(`deleted ${cls}/${cell(id)}\n`);
        return 0;
      }
      default:
        throw new UsageError(`expected an action: list, get, delete\n\n${help}`);
    }
  } catch (err) {
    if (err instanceof RequestFailed) {
      process.stderr.write(`castellan objects ${action}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
