import { describe, expect, it } from '@jest/globals';
import { formatDuration, parseDuration } from '../../common/duration.ts';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['4d', 345_600_000],
    ['1.5s', 1_500],
    ['250', 250],
  ])('%s → %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', 'abc', '5x', '5m junk', 'm5', '-1s', '1s2'])('rejects %p', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it('round-trips through formatDuration', () => {
    for (const ms of [1, 999, 1_000, 61_000, 5_400_000, 345_600_000 + 1_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });
});
