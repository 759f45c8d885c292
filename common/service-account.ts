/**
 * Which ServiceAccount this process names when it calls (common/access.ts):
 * the one its NATS token belongs to when it connects with a projected
 * ServiceAccount token (the auth callout grants calls only under that name,
 * so stating anything else would be refused by NATS), else the configured
 * one (CASTELLAN_SERVICE_ACCOUNT, which the operator and the chart set from
 * the pod's spec.serviceAccountName). Reads the token file once; the name in
 * a rotated token stays the same.
 */
import { readFileSync } from 'node:fs';
import { serviceAccountOfToken } from './access.ts';
import type { Logger } from './logger.ts';

export function ownServiceAccount(tokenFile: string | undefined, configured: string, log: Logger): string {
  if (tokenFile === undefined) return configured;
  const fromToken = serviceAccountOfToken(readFileSync(tokenFile, 'utf8'));
  if (fromToken === undefined) return configured;
  if (fromToken !== configured && configured !== 'default') {
    log.warn("CASTELLAN_SERVICE_ACCOUNT differs from the ServiceAccount of the NATS token; calls name the token's", { configured, token: fromToken });
  }
  return fromToken;
}
