import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { z } from 'zod';
import { ConfigError, loadConfig, zBool, zDuration, zList, zPort } from '../../common/config.ts';

const schema = z
  .object({
    http: z.object({ port: zPort.default(3600), host: z.string().default('127.0.0.1') }).prefault({}),
    nats: z.object({ urls: zList.pipe(z.array(z.string()).min(1)) }),
    idle: zDuration.default(300_000),
    debug: zBool.default(false),
  })
  .strict();

const envMap = { CASTELLAN_HTTP_PORT: 'http.port', CASTELLAN_NATS_URL: 'nats.urls', CASTELLAN_IDLE: 'idle', CASTELLAN_DEBUG: 'debug' };

function file(content: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'castellan-config-')), 'c.yaml');
  writeFileSync(path, content);
  return path;
}

describe('loadConfig', () => {
  it('applies defaults, then the file, then env, then overrides', () => {
    const f = file('http: {port: 4000}\nnats: {urls: [nats://a:1]}\nidle: 10s\n');
    const cfg = loadConfig(schema, {
      envMap,
      file: f,
      env: { CASTELLAN_NATS_URL: 'nats://b:1, nats://c:2', CASTELLAN_DEBUG: 'yes' },
      overrides: { http: { port: 5000, host: undefined } },
    });
    expect(cfg).toEqual({ http: { port: 5000, host: '127.0.0.1' }, nats: { urls: ['nats://b:1', 'nats://c:2'] }, idle: 10_000, debug: true });
  });

  it('coerces numeric env strings and names the env var of a bad value', () => {
    expect(() => loadConfig(schema, { envMap, env: { CASTELLAN_NATS_URL: 'nats://a:1', CASTELLAN_HTTP_PORT: 'eighty' } })).toThrow(
      /http\.port \(from CASTELLAN_HTTP_PORT\)/,
    );
    expect(loadConfig(schema, { envMap, env: { CASTELLAN_NATS_URL: 'nats://a:1', CASTELLAN_HTTP_PORT: '8080' } }).http.port).toBe(8080);
  });

  it('reports a missing required field and an unknown key', () => {
    const f = file('bogus: 1\n');
    try {
      loadConfig(schema, { envMap, file: f, env: {} });
      throw new Error('expected a ConfigError');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const issues = (err as ConfigError).issues.join('\n');
      expect(issues).toMatch(/^nats: /m);
      expect(issues).toMatch(/bogus/);
      expect((err as ConfigError).message).toContain(f);
    }
  });

  it('rejects a bad duration with an example', () => {
    expect(() => loadConfig(schema, { envMap, env: { CASTELLAN_NATS_URL: 'nats://a:1', CASTELLAN_IDLE: 'soon' } })).toThrow(
      /idle \(from CASTELLAN_IDLE\): "soon" is not a duration/,
    );
  });

  it('explains unreadable and malformed files', () => {
    expect(() => loadConfig(schema, { file: '/nonexistent/c.yaml' })).toThrow(/cannot read file/);
    expect(() => loadConfig(schema, { file: file('a: [1, 2\n') })).toThrow(/not valid YAML/);
    expect(() => loadConfig(schema, { file: file('- 1\n- 2\n') })).toThrow(/expected a mapping/);
  });
});
