/**
 * `castellan dev`'s terminal output that can never stall the system.
 *
 * Node writes to a pipe synchronously on Linux: if whoever started
 * `castellan dev` does not read its output (a script holding the pipe), a
 * full pipe would block castellan dev, then every child blocked writing to
 * it. FdWriter instead queues lines in memory and writes them one at a time
 * with asynchronous fs.write (a blocked write occupies one threadpool thread,
 * not the event loop). Past `limitBytes` queued, lines are dropped and a
 * count of them is printed once the output moves again.
 */
import { write } from 'node:fs';
import { Writable } from 'node:stream';

export interface TextSink {
  write(text: string): unknown;
}

export class FdWriter implements TextSink {
  private readonly fd: number;
  private readonly limitBytes: number;
  /** Pending writes; `counted` ones count against the limit (the drop notice does not). */
  private readonly queue: { buf: Buffer; counted: boolean }[] = [];
  private queued = 0;
  private dropped = 0;
  private writing = false;
  private broken = false;

  constructor(fd: number, limitBytes = 4 * 1024 * 1024) {
    this.fd = fd;
    this.limitBytes = limitBytes;
  }

  /** Queues text; false when it was dropped (output not read, or closed). */
  write(text: string): boolean {
    if (this.broken) return false;
    const buf = Buffer.from(text, 'utf8');
    if (this.queued + buf.length > this.limitBytes) {
      this.dropped += 1;
      return false;
    }
    this.queue.push({ buf, counted: true });
    this.queued += buf.length;
    this.pump();
    return true;
  }

  /** Lines dropped so far because the output was not read. */
  get droppedLines(): number {
    return this.dropped;
  }

  private pump(): void {
    if (this.writing || this.broken) return;
    if (this.queue.length === 0) return;
    if (this.dropped > 0 && this.queued < this.limitBytes / 2) {
      const note = Buffer.from(`castellan dev: ${this.dropped} output lines were dropped because nobody read them\n`, 'utf8');
      this.dropped = 0;
      this.queue.push({ buf: note, counted: false });
    }
    const { buf, counted } = this.queue.shift() as { buf: Buffer; counted: boolean };
    this.writing = true;
    const attempt = (offset: number) => {
      write(this.fd, buf, offset, buf.length - offset, null, (err, n) => {
        if (err !== null) {
          if (err.code === 'EAGAIN') {
            setTimeout(() => attempt(offset), 20);
            return;
          }
          // EPIPE and the like: the reader is gone; stop writing, keep running.
          this.broken = true;
          this.queue.length = 0;
          this.queued = 0;
          this.writing = false;
          return;
        }
        if (offset + n < buf.length) {
          attempt(offset + n);
          return;
        }
        if (counted) this.queued -= buf.length;
        this.writing = false;
        this.pump();
      });
    };
    attempt(0);
  }
}

/** A Writable over a sink (for winston's Stream transport). */
export function writableOf(sink: TextSink): Writable {
  return new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      sink.write(typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
      callback();
    },
  });
}
