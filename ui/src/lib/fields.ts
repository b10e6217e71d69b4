// The field sidebar: the most frequent values of each metadata key among loaded events.

export interface ValueCount {
  value: string;
  count: number;
  percent: number;
}

export interface FieldSummary {
  key: string;
  /** Events holding the key. */
  present: number;
  top: ValueCount[];
}

/** A scalar as the API's filters spell it: strings as they are, numbers as written. */
function scalarText(value: unknown): string | null {
  if (value === null) return 'null';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (isRawNumber(value)) return value.rawJSON;
  return null;
}

/** A number kept as its source text because a double would change it. */
function isRawNumber(value: unknown): value is { rawJSON: string } {
  return typeof value === 'object' && value !== null && typeof (value as { rawJSON?: unknown }).rawJSON === 'string';
}

/** Dotted key paths to every scalar of `metadata`, nested objects included, arrays not. */
export function flatten(metadata: unknown, prefix = '', into: Map<string, string> = new Map()): Map<string, string> {
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata) || isRawNumber(metadata)) return into;
  for (const [key, value] of Object.entries(metadata)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const text = scalarText(value);
    if (text !== null) into.set(path, text);
    else flatten(value, path, into);
  }
  return into;
}

export function fieldCounts(events: { metadata?: unknown }[], topValues = 5, maxKeys = 50): FieldSummary[] {
  const counts = new Map<string, Map<string, number>>();
  for (const event of events) {
    for (const [key, value] of flatten(event.metadata)) {
      let values = counts.get(key);
      if (!values) counts.set(key, (values = new Map()));
      values.set(value, (values.get(value) ?? 0) + 1);
    }
  }
  const total = events.length;
  return [...counts]
    .map(([key, values]) => {
      const present = [...values.values()].reduce((sum, count) => sum + count, 0);
      const top = [...values]
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
        .slice(0, topValues)
        .map(([value, count]) => ({ value, count, percent: total ? (100 * count) / total : 0 }));
      return { key, present, top };
    })
    .sort((a, b) => b.present - a.present || a.key.localeCompare(b.key))
    .slice(0, maxKeys);
}
