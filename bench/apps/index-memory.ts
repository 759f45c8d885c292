/**
 * Heap bytes per key of the storage key index (sidecar/storage/key-index.ts)
 * alone, measured exactly: run with `node --expose-gc`, builds the index of N
 * keys `k0…k{N-1}` (strings decoded from bytes, as the sidecar gets them from
 * NATS headers) and prints `{"keys":N,"bytesPerKey":B}` — heap used plus
 * array buffers (the typed arrays) after a full GC with the index alive,
 * less before it, over N.
 */
import { KeyIndex } from '../../sidecar/storage/key-index.ts';

const n = Number(process.argv[2] ?? '100000');
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');
// Warm up (code compiled, allocator settled) with a small index, then measure a clean build.
await KeyIndex.build({ keys: ['a', 'b'], versions: [1, 2], sizes: [1, 1] });
gc();
gc();
const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
const before = used();
const keys: string[] = [];
const versions: number[] = [];
const sizes: number[] = [];
for (let i = 0; i < n; i++) {
  keys.push(Buffer.from(`k${(i * 7919) % n}`, 'utf8').toString('utf8'));
  versions.push(1_000_000 + i);
  sizes.push(64);
}
const idx = await KeyIndex.build({ keys, versions, sizes });
keys.length = 0;
versions.length = 0;
sizes.length = 0;
gc();
gc();
const after = used();
process.stdout.write(`${JSON.stringify({ keys: idx.size, bytesPerKey: Math.round((after - before) / n) })}\n`);
