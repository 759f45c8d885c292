/** Reads numbers from a sidecar's Prometheus endpoint (`GET /metrics`). */
import { http } from './http.ts';

/** Sum of every sample of metric `name` (all label sets). */
export async function metricSum(sidecarUrl: string, name: string): Promise<number> {
  const text = (await http(`${sidecarUrl}/metrics`)).body.toString('utf8');
  let n = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) {
      n += Number(line.split(' ').at(-1));
      seen = true;
    }
  }
  if (!seen) throw new Error(`metric ${name} not found at ${sidecarUrl}/metrics`);
  return n;
}
