/**
 * The NATS account key of a namespace, derived, not stored: the account's
 * identity (its public key, which names its JetStream store on every server)
 * must be the same on every operator replica and across restarts, or a
 * namespace's streams would be orphaned under an old key. It is
 * HMAC-SHA256(secret, "castellan/account/" + account name) used as the ed25519
 * seed, so it needs no Secret per namespace and no coordination between
 * replicas. Rotating the secret re-keys every namespace (new, empty accounts):
 * keep it like the callout's issuer seed, which is its default.
 *
 * The account's private key is never used to sign anything: account JWTs are
 * signed by the operator signing key and users by the callout's signing key,
 * which every namespace account lists (accounts.ts).
 */
import { createHmac } from 'node:crypto';
import { fromSeed, type KeyPair } from '@nats-io/nkeys';
import { base32Encode, rfc4648 } from '../../common/base32.ts';

/** CRC-16/XMODEM, as nkeys checksums its encodings. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

const seedPrefix = 18 << 3; // 'S'
const accountPrefix = 0; // 'A'

/** The nkeys seed string (`SA…`) of 32 raw seed bytes. */
export function accountSeedOf(raw: Uint8Array): string {
  if (raw.length !== 32) throw new Error('an ed25519 seed is 32 bytes');
  const body = new Uint8Array(2 + 32 + 2);
  body[0] = seedPrefix | (accountPrefix >> 5);
  body[1] = (accountPrefix & 31) << 3;
  body.set(raw, 2);
  const crc = crc16(body.subarray(0, 34));
  body[34] = crc & 0xff;
  body[35] = crc >> 8;
  return base32Encode(body, rfc4648);
}

/** The key pair of account `name`, derived from `secret`. */
export function deriveAccountKey(secret: string, name: string): KeyPair {
  const raw = createHmac('sha256', secret).update(`castellan/account/${name}`).digest();
  return fromSeed(new TextEncoder().encode(accountSeedOf(new Uint8Array(raw))));
}
