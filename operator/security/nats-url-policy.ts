/**
 * Which NATS servers a resource may make the operator (and its pods) dial.
 * spec.nats.urls is editable by anyone who may edit the resource, so the
 * operator accepts only its own CASTELLAN_NATS_URL servers and those the
 * cluster admin listed in CASTELLAN_NATS_ALLOWED_URLS (`*` = any). Pure.
 *
 * URLs compare by scheme, host and port, lower-cased, so `nats://NATS:4222`
 * and `nats://nats:4222/` are one server; `tls://` and `nats://` are not.
 */

function normalise(url: string): string {
  try {
    const u = new URL(url.trim());
    return `${u.protocol}//${u.hostname.toLowerCase()}:${u.port || '4222'}`;
  } catch {
    return url.trim().toLowerCase();
  }
}

/** A refusal message naming the URLs that are not allowed, or undefined when every URL is. */
export function refusedNatsUrls(urls: readonly string[] | undefined, own: readonly string[], allowed: readonly string[]): string | undefined {
  if (urls === undefined || urls.length === 0 || allowed.includes('*')) return undefined;
  const ok = new Set([...own, ...allowed].map(normalise));
  const bad = urls.filter((u) => !ok.has(normalise(u)));
  if (bad.length === 0) return undefined;
  return `spec.nats.urls names NATS servers the operator is not allowed to use: ${bad.join(', ')} (the cluster admin allows more with CASTELLAN_NATS_ALLOWED_URLS)`;
}
