// JSON with integers past 2^53 kept exactly: the reviver keeps their source text (where
// the browser passes it) and `pretty` writes it back unchanged.

type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;
type RawJson = { rawJSON: (text: string) => unknown };
const raw = (JSON as unknown as Partial<RawJson>).rawJSON;

const keepLargeIntegers: Reviver = (_key, value, context) => {
  if (raw && typeof value === 'number' && !Number.isSafeInteger(value) && context?.source && /^-?\d+$/.test(context.source)) {
    return raw(context.source);
  }
  return value;
};

export function parseExact<T>(text: string): T {
  return JSON.parse(text, keepLargeIntegers as Parameters<typeof JSON.parse>[1]) as T;
}

export function pretty(value: unknown): string {
  return JSON.stringify(value, null, 2) ?? 'null';
}
