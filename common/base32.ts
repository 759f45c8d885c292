/**
 * Base32 without padding, over a chosen alphabet: RFC 4648's
 * (`ABCDEFGHIJKLMNOPQRSTUVWXYZ234567`, nkeys encodings,
 * operator/authcallout/account-keys.ts) or lowercase base32hex (SQS queue
 * names that are not Kubernetes names, sidecar/sqs/urls.ts). Pure.
 */
export const rfc4648 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
export const base32HexLower = '0123456789abcdefghijklmnopqrstuv';

export function base32Encode(bytes: Uint8Array, alphabet: string): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = ((value << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** The bytes of `s`, or undefined if it holds a character outside `alphabet`. */
export function base32Decode(s: string, alphabet: string): Uint8Array | undefined {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of s) {
    const v = alphabet.indexOf(c);
    if (v < 0) return undefined;
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}
