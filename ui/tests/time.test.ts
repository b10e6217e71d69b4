import { describe, expect, it } from 'vitest';
import { formatInstant, parseInstant, pickInterval, resolveRange } from '../src/lib/time';

describe('time ranges', () => {
  const now = new Date('2024-06-01T12:00:00.000Z');

  it('resolves presets against now and absolute bounds as given', () => {
    expect(resolveRange('15m', '', '', 'utc', now)).toEqual({ from: new Date('2024-06-01T11:45:00Z'), to: now });
    expect(resolveRange('7d', '', '', 'utc', now)!.from).toEqual(new Date('2024-05-25T12:00:00Z'));
    expect(resolveRange('', '2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z', 'utc', now)!.to).toEqual(new Date('2024-01-02T00:00:00Z'));
    expect(resolveRange('', '2024-01-02T00:00:00Z', '2024-01-01T00:00:00Z', 'utc', now)).toBeNull();
    expect(resolveRange('3w', '', '', 'utc', now)).toBeNull();
  });

  it('parses what people paste, in the chosen zone, and refuses the rest', () => {
    expect(parseInstant('2024-01-15 12:30', 'utc')).toEqual(new Date('2024-01-15T12:30:00Z'));
    expect(parseInstant('2024-01-15T12:30:00.5', 'utc')).toEqual(new Date('2024-01-15T12:30:00.500Z'));
    expect(parseInstant('2024-01-15T12:30:00', 'utc')).toEqual(new Date('2024-01-15T12:30:00Z'));
    expect(parseInstant('2024-01-15T12:30:00.000+02:00', 'local')).toEqual(new Date('2024-01-15T10:30:00Z'));
    expect(parseInstant('1705321800', 'utc')).toEqual(new Date('2024-01-15T12:30:00Z'));
    expect(parseInstant('1705321800000', 'utc')).toEqual(new Date('2024-01-15T12:30:00Z'));
    expect(parseInstant('2024-01-15', 'local')!.getHours()).toBe(0);
    for (const bad of ['', '  ', 'yesterday', '2024-02-30', '2024-13-01 00:00', '2024-01-15 24:00', '99999999999999999', '2024-01-15 12:30\u0000']) {
      expect(parseInstant(bad, 'utc'), bad).toBeNull();
    }
  });

  it('formats in UTC or the local zone', () => {
    expect(formatInstant('2024-01-15T12:30:00.123Z', 'utc')).toBe('2024-01-15 12:30:00.123');
    const local = new Date('2024-01-15T12:30:00.123Z');
    expect(parseInstant(formatInstant(local, 'local'), 'local')).toEqual(local);
    expect(formatInstant('garbage', 'utc')).toBe('garbage');
  });

  it('picks the narrowest interval under the bucket budget', () => {
    const span = (minutes: number) => ({ from: now, to: new Date(now.getTime() + minutes * 60_000) });
    expect(pickInterval(span(15))).toBe('1m');
    expect(pickInterval(span(60))).toBe('1m');
    expect(pickInterval(span(24 * 60))).toBe('30m');
    expect(pickInterval(span(7 * 24 * 60))).toBe('3h');
    expect(pickInterval(span(10_000 * 24 * 60))).toBe('7d');
  });
});
