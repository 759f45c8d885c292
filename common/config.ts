/**
 * Configuration loading: one zod schema per process, fed from (lowest first)
 * the schema's defaults, an optional YAML/JSON file, environment variables and
 * explicit overrides (command-line flags). Every failure names the field and
 * where its value came from.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { z } from 'zod';
import { parseDuration } from './duration.ts';

export class ConfigError extends Error {
  readonly issues: string[];
  constructor(source: string, issues: string[]) {
    super(`Invalid configuration (${source}): ${issues.join('; ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** Maps an environment variable to a dotted path in the config object. */
export type EnvMap = Record<string, string>;

export interface LoadOptions {
  /** Env var → dotted config path, e.g. `{ CASTELLAN_HTTP_PORT: 'http.port' }`. */
  envMap?: EnvMap;
  env?: NodeJS.ProcessEnv;
  /** A YAML or JSON file; missing file is an error. */
  file?: string;
  /** Highest precedence, e.g. parsed flags (undefined values are ignored). */
  overrides?: Record<string, unknown>;
  /** Names the configuration in error messages. */
  source?: string;
}

export function loadConfig<S extends z.ZodType>(schema: S, opts: LoadOptions = {}): z.infer<S> {
  const fromFile = opts.file === undefined ? {} : readConfigFile(opts.file);
  const fromEnv: Record<string, unknown> = {};
  for (const [name, path] of Object.entries(opts.envMap ?? {})) {
    const value = (opts.env ?? process.env)[name];
    if (value !== undefined && value !== '') setPath(fromEnv, path, value);
  }
  const merged = deepMerge(deepMerge(fromFile, fromEnv), opts.overrides ?? {});
  const result = schema.safeParse(merged);
  if (!result.success) {
    const reverse = new Map(Object.entries(opts.envMap ?? {}).map(([k, v]) => [v, k]));
    const issues = result.error.issues.map((i) => {
      const path = i.path.map(String).join('.');
      const env = reverse.get(path);
      return `${path || '(root)'}${env !== undefined && getPath(fromEnv, path) !== undefined ? ` (from ${env})` : ''}: ${i.message}`;
    });
    throw new ConfigError(opts.source ?? opts.file ?? 'environment', issues);
  }
  return result.data;
}

/**
 * The YAML parser, loaded on the first config file read: processes started
 * from environment variables alone (every sidecar in a pod) never carry its
 * ~70 modules in their heap.
 */
function parseYaml(text: string): unknown {
  const yaml = createRequire(import.meta.url)('yaml') as typeof Yaml;
  return yaml.parse(text);
}

export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read file: ${(err as Error).message}`]);
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML: ${(err as Error).message}`]);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(file, ['(root): expected a mapping']);
  return data as Record<string, unknown>;
}

// ---- schema helpers shared by every config ----

/** A TCP port; accepts numbers and numeric strings (env). 0 means "pick a free one". */
export const zPort = z.coerce.number().int().min(0).max(65535);

/** A duration in ms from `30s`, `5m`, `1h30m` or a number of ms. */
export const zDuration = z.union([z.number().nonnegative(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration (examples: 500ms, 30s, 5m, 1h)` });
    return z.NEVER;
  }
  return ms;
});

/** A list given either as an array or as a comma-separated string (env). */
export const zList = z
  .union([z.array(z.string()), z.string()])
  .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter((s) => s !== ''));

/** A boolean from true/false/1/0/yes/no strings too. */
export const zBool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])]).transform(
  (v) => v === true || v === 'true' || v === '1' || v === 'yes',
);

// ---- plain-object helpers ----

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v === undefined) continue;
    const prev = out[k];
    out[k] = isPlainObject(prev) && isPlainObject(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    if (!isPlainObject(next)) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1] as string] = value;
}

function getPath(obj: Record<string, unknown>, path: string): unknown {
  let cur: unknown = obj;
  for (const k of path.split('.')) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}
