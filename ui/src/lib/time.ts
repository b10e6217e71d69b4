// Time ranges: relative presets, pasted absolute instants, and display in the browser's
// zone or UTC.

import type { Zone } from './url';

export const PRESETS: Record<string, number> = {
  '15m': 15 * 60_000,
  '1h': 60 * 60_000,
  '24h': 24 * 60 * 60_000,
  '7d': 7 * 24 * 60 * 60_000,
};

export interface Range {
  from: Date;
  to: Date;
}

/** The range a state names: a preset ending `now`, or its absolute bounds. */
export function resolveRange(range: string, from: string, to: string, zone: Zone, now: Date): Range | null {
  const span = PRESETS[range];
  if (span) return { from: new Date(now.getTime() - span), to: now };
  const start = parseInstant(from, zone);
  const end = parseInstant(to, zone);
  return start && end && start <= end ? { from: start, to: end } : null;
}

const LOCAL_FORM = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?$/;

/**
 * An instant as people paste it: ISO 8601 with a zone; `YYYY-MM-DD[ HH:mm[:ss[.SSS]]]`
 * read in `zone`; or Unix time in seconds or milliseconds.
 */
export function parseInstant(text: string, zone: Zone): Date | null {
  const trimmed = text.trim();
  if (!trimmed) return null;
  if (/^\d{9,13}$/.test(trimmed)) {
    const number = Number(trimmed);
    return new Date(trimmed.length > 11 ? number : number * 1000);
  }
  const local = LOCAL_FORM.exec(trimmed);
  if (local) {
    const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '0'] = local;
    const parts = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), Number(frac.padEnd(3, '0').slice(0, 3))] as const;
    // Date rolls 30 February over into March; a field that changed was out of range.
    const fields = new Date(Date.UTC(...parts));
    const exact = [fields.getUTCFullYear(), fields.getUTCMonth(), fields.getUTCDate(), fields.getUTCHours(), fields.getUTCMinutes(), fields.getUTCSeconds()];
    if (exact.some((value, index) => value !== parts[index])) return null;
    return zone === 'utc' ? fields : new Date(...parts);
  }
  if (!/^\d{4}-\d{2}-\d{2}T.*(Z|[+-]\d{2}:?\d{2})$/i.test(trimmed)) return null;
  const date = new Date(trimmed);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** `YYYY-MM-DD HH:mm:ss.SSS` in `zone`. */
export function formatInstant(instant: Date | string, zone: Zone): string {
  const date = typeof instant === 'string' ? new Date(instant) : instant;
  if (Number.isNaN(date.getTime())) return String(instant);
  const shifted = zone === 'utc' ? date : new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return shifted.toISOString().replace('T', ' ').replace('Z', '');
}

/** The API's spelling of an instant. */
export const iso = (date: Date) => date.toISOString();

const INTERVALS: [string, number][] = [
  ['1m', 1], ['5m', 5], ['15m', 15], ['30m', 30], ['1h', 60], ['3h', 180], ['6h', 360], ['12h', 720], ['1d', 1440], ['7d', 10080],
];

/** The narrowest histogram interval giving at most `maxBuckets` buckets over `range`. */
export function pickInterval(range: Range, maxBuckets = 90): string {
  const minutes = (range.to.getTime() - range.from.getTime()) / 60_000;
  for (const [name, width] of INTERVALS) {
    if (minutes / width + 1 <= maxBuckets) return name;
  }
  return INTERVALS[INTERVALS.length - 1][0];
}
