/**
 * `castellan call <class>/<id>[/path]`: calls a durable object through a
 * running sidecar (SPEC §2.1), curl-style, and prints the app's answer.
 */
import { describeFailure, parseHeaders, readBodyArg, request, RequestFailed, sidecarHelp, sidecarUrl } from '../sidecar-client.ts';
import { parseFlags, UsageError } from '../usage.ts';

export const help = `Usage: castellan call <class>/<id>[/path][?query] [-X METHOD] [-d BODY] [-H 'Name: value'] [-i]

Calls the durable object <id> of class <class> through the sidecar:
  ANY /v1/objects/<class>/<id>/<path>
The object's app gets the request at /<path>; its answer body is printed on
stdout. The id is URL-encoded for you (use --id for an id containing "/").

Options:
  -X, --request METHOD   HTTP method (default GET, or POST with -d)
  -d, --data BODY        request body; "-" reads stdin, "@file" reads a file
  -H, --header 'N: v'    request header (repeatable)
  --id ID                the object id, when the target is just <class>[/path]
  -i, --include          print the status line and response headers first
${sidecarHelp}
  -h, --help             show this help

Exit codes: 0 for a 2xx/3xx answer, 1 otherwise (the error is printed on stderr).

Examples:
  castellan call counter/alice/increment -X POST
  castellan call counter/alice
  castellan call chat/lobby/messages -d '{"user":"ann","text":"hi"}'`;

export interface CallTarget {
  cls: string;
  id: string;
  /** `` or `/…` plus any `?query`, passed through as written. */
  rest: string;
}

/** Splits `class/id[/path][?query]` (or `class[/path]` with an explicit id). */
export function parseTarget(target: string, explicitId?: string): CallTarget {
  const slash = target.indexOf('/');
  const cls = slash === -1 ? target : target.slice(0, slash);
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(cls)) throw new UsageError(`"${cls}" is not a class name (expected <class>/<id>[/path])`);
  const after = slash === -1 ? '' : target.slice(slash + 1);
  if (explicitId !== undefined) return { cls, id: explicitId, rest: after === '' ? '' : `/${after}` };
  const end = after.search(/[/?]/);
  const id = end === -1 ? after : after.slice(0, end);
  if (id === '') throw new UsageError(`missing object id in "${target}" (expected <class>/<id>[/path], or --id ID)`);
  return { cls, id, rest: end === -1 ? '' : after.slice(end) };
}

export function objectPath(t: CallTarget): string {
  const rest = t.rest.startsWith('?') ? `/${t.rest}` : t.rest;
  return `/v1/objects/${encodeURIComponent(t.cls)}/${encodeURIComponent(t.id)}${rest}`;
}

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(
    argv,
    {
      request: { type: 'string', short: 'X' },
      data: { type: 'string', short: 'd' },
      header: { type: 'string', short: 'H', multiple: true },
      id: { type: 'string' },
      include: { type: 'boolean', short: 'i' },
      sidecar: { type: 'string' },
    },
    help,
    true,
  );
  if (flags === undefined) return 0;
  const [target, ...extra] = flags.positionals;
  if (target === undefined || extra.length > 0) throw new UsageError(`expected one target <class>/<id>[/path]\n\n${help}`);
  const v = flags.values as { request?: string; data?: string; header?: string[]; id?: string; include?: boolean; sidecar?: string };
  const base = sidecarUrl(v.sidecar);
  const t = parseTarget(target, v.id);
  const body = v.data === undefined ? undefined : readBodyArg(v.data);
  const method = (v.request ?? (body === undefined ? 'GET' : 'POST')).toUpperCase();
  if (!/^[A-Z]+$/.test(method)) throw new UsageError(`-X ${v.request}: not an HTTP method`);
  const headers = parseHeaders(v.header ?? []);
  if (body !== undefined && headers['content-type'] === undefined && looksLikeJson(body)) headers['content-type'] = 'application/json';
  try {
    const res = await request(base, method, objectPath(t), { headers, ...(body === undefined ? {} : { body }) });
    if (v.include === true) {
      process.stdout.write(`HTTP ${res.status} ${res.statusText}\n`);
      for (const [k, val] of res.headers) process.stdout.write(`${k}: ${val}\n`);
      process.stdout.write('\n');
    }
    const ok = res.status < 400;
    if (ok || v.include === true) {
      process.stdout.write(res.body);
      if (res.body.length > 0 && res.body[res.body.length - 1] !== 0x0a && process.stdout.isTTY) process.stdout.write('\n');
    }
    if (!ok) process.stderr.write(`castellan call: ${describeFailure(res)}\n`);
    return ok ? 0 : 1;
  } catch (err) {
    if (err instanceof RequestFailed) {
      process.stderr.write(`castellan call: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

function looksLikeJson(body: Buffer): boolean {
  const s = body.toString('utf8').trim();
  if (!(s.startsWith('{') || s.startsWith('['))) return false;
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}
