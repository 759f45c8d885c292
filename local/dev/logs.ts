/**
 * Readable logs for `castellan dev`: every line a child prints is prefixed
 * with the child's name (padded, coloured on a terminal); Castellan's own
 * winston JSON lines become `HH:MM:SS.mmm level message key=value ...`.
 * Lines that are not Castellan JSON (an app's own output) pass through as is.
 */
import winston from 'winston';
import { rootLogger } from '../../common/logger.ts';
import { writableOf, type TextSink } from './output.ts';

const colours = [36, 32, 33, 35, 34, 96, 92, 93, 95, 94];
const levelColour: Record<string, number> = { error: 31, warn: 33, info: 32, debug: 90, verbose: 90, http: 90, silly: 90 };

/** Fields every Castellan log line carries that the readable form shows elsewhere or drops. */
const dropped = new Set(['level', 'message', 'timestamp', 'pid', 'role', 'pod', 'component']);

export interface LogStyle {
  /** Width the prefix is padded to (the longest process name). */
  width: number;
  colour: boolean;
}

function paint(text: string, code: number, on: boolean): string {
  return on ? `\u001b[${code}m${text}\u001b[0m` : text;
}

/** A stable colour per process name. */
function colourOf(name: string): number {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return colours[h % colours.length] as number;
}

function renderValue(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  return JSON.stringify(v) ?? String(v);
}

/** `HH:MM:SS.mmm` of an ISO timestamp (local clock of the line), or '' when absent. */
function clock(ts: unknown): string {
  if (typeof ts !== 'string') return '';
  const m = /T(\d\d:\d\d:\d\d(?:\.\d{3})?)/.exec(ts);
  return m === null ? '' : (m[1] as string);
}

/** The readable form of one line a child printed (without a trailing newline). */
export function formatLine(name: string, line: string, style: LogStyle): string {
  const prefix = paint(`${name.padEnd(style.width)} |`, colourOf(name), style.colour);
  return `${prefix} ${readable(line, style.colour)}`;
}

/** A winston JSON line made readable; anything else unchanged. */
export function readable(line: string, colour = false): string {
  if (!line.startsWith('{')) return line;
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return line;
  }
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return line;
  const e = entry as Record<string, unknown>;
  if (typeof e.level !== 'string' || e.message === undefined) return line;
  const fields = Object.entries(e)
    .filter(([k]) => !dropped.has(k))
    .map(([k, v]) => `${k}=${renderValue(v)}`);
  const level = paint(e.level.padEnd(5), levelColour[e.level] ?? 0, colour);
  const message = typeof e.component === 'string' ? `${e.component}: ${String(e.message)}` : String(e.message);
  return [clock(e.timestamp), level, message, ...fields].filter((s) => s !== '').join(' ');
}

/**
 * Makes this process's own winston logs readable in the same style, prefixed
 * with `name`, written to `sink` (`castellan dev` is for people at a terminal;
 * children keep JSON).
 */
export function useReadableLogs(name: string, colour: boolean, width: number, sink: TextSink): void {
  const root = rootLogger();
  root.configure({
    level: root.level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.errors({ stack: true }),
      winston.format.printf((info) => formatLine(name, JSON.stringify(info), { width, colour })),
    ),
    defaultMeta: { pid: process.pid },
    transports: [new winston.transports.Stream({ stream: writableOf(sink) })],
  });
}
