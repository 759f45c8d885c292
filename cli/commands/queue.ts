/**
 * `castellan queue send|receive|delete|stats|purge <queue>`: a replicated
 * queue through a running sidecar (SPEC §2.3). Prints the sidecar's JSON.
 */
import { describeFailure, readBodyArg, request, RequestFailed, sidecarHelp, sidecarUrl, type SidecarResponse } from '../sidecar-client.ts';
import { parseFlags, UsageError } from '../usage.ts';

export const help = `Usage: castellan queue <action> <queue> [options]

Uses the replicated queue <queue> through the sidecar and prints its JSON answer.

Actions:
  send <queue> BODY          send one message (BODY: text; "-" reads stdin, "@file" a file)
      --replicas N             queue hosts that must store it before the send returns
                               (default: the queue's replicaCount)
      --delay SECONDS          deliver it this many seconds later
      --dedup ID               deduplication id
      --attr key=value         message attribute (repeatable)
  receive <queue>            receive messages (long-poll); each stays invisible to other
                             receivers until deleted or its visibility timeout ends
      --max N                  at most N messages (1-10, default 1)
      --wait SECONDS           long-poll up to this long (default 5)
      --visibility SECONDS     visibility timeout for these messages
      --delete                 delete each message right after receiving it
  delete <queue> RECEIPT     delete a received message by its receipt handle
  stats <queue>              hosts, replicaCount and approximate message counts
  purge <queue>              delete every message of the queue

Options:
${sidecarHelp}
  -h, --help             show this help

Exit codes: 0 success, 1 the sidecar refused (the error is printed on stderr), 2 bad usage.

Examples:
  castellan queue send jobs '{"task":"resize","image":42}'
  castellan queue receive jobs --max 10 --wait 20
  castellan queue delete jobs <receiptHandle>
  castellan queue stats jobs`;

const actions = ['send', 'receive', 'delete', 'stats', 'purge'] as const;
type Action = (typeof actions)[number];

function number(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be a number from ${min} to ${max}, got "${raw}"`);
  return n;
}

function json(body: unknown): { headers: Record<string, string>; body: string } {
  return { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

function print(res: SidecarResponse): void {
  if (res.body.length === 0) return;
  const text = res.body.toString('utf8');
  try {
    process.stdout.write(`${JSON.stringify(JSON.parse(text), null, 2)}\n`);
  } catch {
    process.stdout.write(`${text}\n`);
  }
}

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(
    argv,
    {
      replicas: { type: 'string' },
      delay: { type: 'string' },
      dedup: { type: 'string' },
      attr: { type: 'string', multiple: true },
      max: { type: 'string' },
      wait: { type: 'string' },
      visibility: { type: 'string' },
      delete: { type: 'boolean' },
      sidecar: { type: 'string' },
    },
    help,
    true,
  );
  if (flags === undefined) return 0;
  const v = flags.values as Record<string, string | boolean | string[] | undefined>;
  const [action, queue, ...args] = flags.positionals;
  if (action === undefined || !(actions as readonly string[]).includes(action)) throw new UsageError(`expected an action: ${actions.join(', ')}\n\n${help}`);
  if (queue === undefined || queue === '') throw new UsageError(`castellan queue ${action}: missing the queue name\n\n${help}`);
  const base = sidecarUrl(v.sidecar as string | undefined);
  const q = `/v1/queues/${encodeURIComponent(queue)}`;
  const expectArgs = (n: number, what: string) => {
    if (args.length !== n) throw new UsageError(`castellan queue ${action}: expected ${what}\n\n${help}`);
  };

  const call = async (method: string, path: string, init: { headers?: Record<string, string>; body?: string | Buffer; timeoutMs?: number } = {}) => {
    const res = await request(base, method, path, init);
    if (res.status >= 400) throw new RequestFailed(describeFailure(res));
    return res;
  };

  try {
    switch (action as Action) {
      case 'send': {
        expectArgs(1, 'one message BODY');
        const attributes: Record<string, string> = {};
        for (const a of (v.attr as string[] | undefined) ?? []) {
          const i = a.indexOf('=');
          if (i <= 0) throw new UsageError(`--attr "${a}": expected key=value`);
          attributes[a.slice(0, i)] = a.slice(i + 1);
        }
        const replicas = number('replicas', v.replicas as string | undefined, 1, 5);
        const delaySeconds = number('delay', v.delay as string | undefined, 0, 900);
        const msg = {
          body: readBodyArg(args[0] as string).toString('utf8'),
          ...(replicas === undefined ? {} : { replicas }),
          ...(delaySeconds === undefined ? {} : { delaySeconds }),
          ...(v.dedup === undefined ? {} : { deduplicationId: v.dedup }),
          ...(Object.keys(attributes).length === 0 ? {} : { attributes }),
        };
        print(await call('POST', `${q}/messages`, json(msg)));
        return 0;
      }
      case 'receive': {
        expectArgs(0, 'no argument after the queue');
        const maxMessages = number('max', v.max as string | undefined, 1, 10) ?? 1;
        const waitSeconds = number('wait', v.wait as string | undefined, 0, 20) ?? 5;
        const visibility = number('visibility', v.visibility as string | undefined, 0, 43_200);
        const res = await call(
          'POST',
          `${q}/receive`,
          { ...json({ maxMessages, waitSeconds, ...(visibility === undefined ? {} : { visibilityTimeoutSeconds: visibility }) }), timeoutMs: (waitSeconds + 30) * 1000 },
        );
        print(res);
        if (v.delete === true) {
          const { messages } = JSON.parse(res.body.toString('utf8')) as { messages?: { receiptHandle: string }[] };
          for (const m of messages ?? []) await call('DELETE', `${q}/messages/${encodeURIComponent(m.receiptHandle)}`);
        }
        return 0;
      }
      case 'delete':
        expectArgs(1, 'one RECEIPT handle');
        await call('DELETE', `${q}/messages/${encodeURIComponent(args[0] as string)}`);
        return 0;
      case 'stats':
        expectArgs(0, 'no argument after the queue');
        print(await call('GET', q));
        return 0;
      case 'purge':
        expectArgs(0, 'no argument after the queue');
        print(await call('POST', `${q}/purge`));
        return 0;
    }
  } catch (err) {
    if (err instanceof RequestFailed) {
      process.stderr.write(`castellan queue ${action}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  return 0;
}
