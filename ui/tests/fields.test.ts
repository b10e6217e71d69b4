import { describe, expect, it } from 'vitest';
import { fieldCounts, flatten } from '../src/lib/fields';
import { counter, rates } from '../src/lib/metrics';

describe('field counts', () => {
  it('counts scalar values by dotted key, most frequent first, with shares of loaded events', () => {
    const events = [
      { metadata: { env: 'prod', user: { id: 7 } } },
      { metadata: { env: 'prod', ok: true } },
      { metadata: { env: 'dev', tags: ['a'] } },
      { metadata: null },
    ];
    const fields = fieldCounts(events);
    expect(fields.map((field) => field.key)).toEqual(['env', 'ok', 'user.id']);
    expect(fields[0].top).toEqual([
      { value: 'prod', count: 2, percent: 50 },
      { value: 'dev', count: 1, percent: 25 },
    ]);
    expect(fields[2].top[0].value).toBe('7');
  });

  it('keeps exact large numbers as written and nulls as null', () => {
    expect([...flatten({ big: { rawJSON: '12345678901234567891' }, none: null })]).toEqual([
      ['big', '12345678901234567891'],
      ['none', 'null'],
    ]);
  });

  it('caps the keys and values it reports', () => {
    const events = Array.from({ length: 100 }, (_, i) => ({ metadata: { [`k${i}`]: i, shared: `v${i}` } }));
    const fields = fieldCounts(events, 3, 10);
    expect(fields).toHaveLength(10);
    expect(fields[0]).toMatchObject({ key: 'shared', present: 100 });
    expect(fields[0].top).toHaveLength(3);
  });
});

describe('metrics rates', () => {
  const text = (stored: number, sum: number, count: number) =>
    `# HELP x\naurore_events_stored_total ${stored}\naurore_events_stored_total_other 99\naurore_batch_write_duration_seconds_sum ${sum}\naurore_batch_write_duration_seconds_count{a="b"} ${count}\n`;

  it('sums series of one name only', () => {
    expect(counter(text(5, 0, 0), 'aurore_events_stored_total')).toBe(5);
  });

  it('turns counters into per-second rates and mean write times, a restart reading as zero', () => {
    const at = (seconds: number, stored: number, sum: number, count: number) => ({
      at: seconds * 1000,
      stored: counter(text(stored, sum, count), 'aurore_events_stored_total'),
      writeSeconds: sum,
      writes: count,
    });
    const series = rates([at(0, 0, 0, 0), at(2, 100, 0.2, 4), at(4, 100, 0.2, 4), at(6, 10, 0.1, 1)]);
    expect(series.map((rate) => rate.storedPerSecond)).toEqual([50, 0, 0]);
    expect(series[0].writeMs).toBeCloseTo(50);
    expect(series[1].writeMs).toBeNull();
  });
});
