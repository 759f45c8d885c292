// Job queue worker: receives jobs from the replicated queue `jobs` through the
// sidecar, works on each one, and deletes it once the work is done. A job
// whose worker dies before the delete becomes visible again after the queue's
// visibility timeout and is received again (at-least-once), so the work must
// be safe to repeat.
//
// A job is a JSON message body:
//   {"task":"sleep","ms":200}                       waits, then reports done
//   {"task":"sum","numbers":[1,2,3]}                adds the numbers
//   {"task":"chat","room":"lobby","text":"hello"}   posts to the chat room object (examples/chat)
//   any body that is not JSON                       is echoed to the log
// A job that cannot be done (an unknown task) is reported and deleted, so it
// is not retried forever; a job that fails for a passing reason (the chat object
// is unavailable) is left alone and comes back after the visibility timeout.
//
// Env: CASTELLAN_SIDECAR_URL (the sidecar), QUEUE (default "jobs"),
//      WORKER_BATCH (messages per receive, default 5).
/* global fetch, setTimeout, AbortSignal, AbortController */

const sidecar = process.env.CASTELLAN_SIDECAR_URL ?? 'http://127.0.0.1:3600';
const queue = process.env.QUEUE ?? 'jobs';
const batch = Number(process.env.WORKER_BATCH ?? '5');
const name = process.env.WORKER_NAME ?? `worker-${process.env.CASTELLAN_APP_REPLICA ?? process.pid}`;
let running = true;
// Aborts a long-poll in progress when the worker is asked to stop.
const stopping = new AbortController();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (text) => console.log(`${new Date().toISOString().slice(11, 23)} ${text}`);

async function call(method, path, body, timeoutMs = 30_000, signal = undefined) {
  const res = await fetch(`${sidecar}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: signal === undefined ? AbortSignal.timeout(timeoutMs) : AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text === '' ? undefined : JSON.parse(text);
}

/** A job that can never succeed. */
class BadJob extends Error {}

/** Does the work of one job; returns a short result for the log. */
async function work(job) {
  switch (job?.task) {
    case 'sleep':
      await sleep(Math.min(60_000, Number(job.ms ?? 100)));
      return `slept ${job.ms ?? 100}ms`;
    case 'echo':
      return `echo ${JSON.stringify(job.text)}`;
    case 'sum':
      return `sum=${(job.numbers ?? []).reduce((a, b) => a + Number(b), 0)}`;
    case 'chat': {
      const room = encodeURIComponent(String(job.room ?? 'lobby'));
      const r = await call('POST', `/v1/objects/chat/${room}/messages`, { user: name, text: String(job.text ?? '') });
      return `posted to chat/${job.room ?? 'lobby'} as #${r.seq}`;
    }
    default:
      throw new BadJob(`unknown task ${JSON.stringify(job?.task)}`);
  }
}

async function main() {
  log(`receiving from queue "${queue}" via ${sidecar}`);
  let failures = 0;
  let lastError = '';
  while (running) {
    let messages;
    try {
      ({ messages } = await call('POST', `/v1/queues/${queue}/receive`, { maxMessages: batch, waitSeconds: 5 }, 35_000, stopping.signal));
      if (failures > 0) log(`receiving again after ${failures} failed attempts`);
      failures = 0;
      lastError = '';
    } catch (err) {
      if (!running) break;
      // Retry with a growing pause (up to 5 s); say so once per distinct error, not every time.
      failures += 1;
      const pause = Math.min(5_000, 500 * 2 ** Math.min(failures, 4));
      if (err.message !== lastError) log(`receive failed (${err.message}); retrying every ${pause / 1000}s or so`);
      lastError = err.message;
      await sleep(pause);
      continue;
    }
    for (const m of messages) {
      let result;
      try {
        let job;
        try {
          job = JSON.parse(m.body);
        } catch {
          job = { task: 'echo', text: m.body };
        }
        result = `done ${await work(job)}`;
      } catch (err) {
        if (!(err instanceof BadJob)) {
          log(`job ${m.messageId} (receive #${m.receiveCount}) failed: ${err.message}; it will come back after its visibility timeout`);
          continue;
        }
        result = `rejected: ${err.message}`;
      }
      try {
        await call('DELETE', `/v1/queues/${queue}/messages/${encodeURIComponent(m.receiptHandle)}`);
        log(`job ${m.messageId} (receive #${m.receiveCount}) ${result}; deleted`);
      } catch (err) {
        log(`job ${m.messageId} ${result}; delete failed (${err.message}): it will be received again`);
      }
    }
  }
  log('stopped');
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    log(`${signal}: finishing the current batch`);
    running = false;
    stopping.abort();
    setTimeout(() => process.exit(0), 8_000).unref();
  });
}
main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
