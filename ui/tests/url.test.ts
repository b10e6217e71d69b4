import { describe, expect, it } from 'vitest';
import { defaultState, filterParams, parseState, stateUrl, withFilter } from '../src/lib/url';

describe('URL state', () => {
  it('round-trips every field, filters in the API spelling', () => {
    const state = {
      ...defaultState(),
      view: 'search' as const,
      service: 'check out/π',
      range: '',
      from: '2024-01-15T10:00:00.000Z',
      to: '2024-01-15T12:00:00.000Z',
      zone: 'utc' as const,
      q: 'timeout & retry',
      filters: [
        { key: 'env', value: 'prod', exclude: false },
        { key: 'user.id', value: '=7&x', exclude: true },
      ],
      columns: ['env', 'user.id'],
      event: '0194a1b2',
    };
    const url = stateUrl(state);
    expect(url).toContain('metadata.env=prod');
    expect(url).toContain('metadata.user.id%21=%3D7%26x');
    const parsed = new URL(url, 'http://127.0.0.1');
    expect(parseState(parsed.pathname, parsed.search)).toEqual(state);
  });

  it('defaults to the last hour, and a relative range drops absolute bounds', () => {
    expect(parseState('/ui/', '')).toEqual(defaultState());
    expect(stateUrl({ ...defaultState(), range: '15m', from: 'x', to: 'y' })).toBe('/ui/?range=15m');
    expect(parseState('/ui/', '?from=a&to=b').range).toBe('');
  });

  it('names views by path and ignores unknown ones', () => {
    expect(parseState('/ui/tail', '').view).toBe('tail');
    expect(parseState('/ui/dlq/extra', '').view).toBe('dlq');
    expect(parseState('/ui/nowhere', '').view).toBe('search');
    expect(parseState('/elsewhere', '').view).toBe('search');
    expect(stateUrl({ ...defaultState(), view: 'health', range: '' })).toBe('/ui/health');
  });

  it('skips filter names without a key and keeps repeated keys', () => {
    const state = parseState('/ui/', '?metadata.=x&metadata.!=y&metadata.a=1&metadata.a=2');
    expect(state.filters).toEqual([
      { key: 'a', value: '1', exclude: false },
      { key: 'a', value: '2', exclude: false },
    ]);
    expect(filterParams(state.filters)).toEqual([['metadata.a', '1'], ['metadata.a', '2']]);
  });

  it('round-trips states made of hostile strings', () => {
    let seed = 7;
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const alphabet = ['a', 'Z', '0', ' ', '&', '=', '?', '#', '%', '%25', '+', '/', '\\', '.', '!', ',', 'é', '日', '😀', '\u0000', '"', "'", '<', '>'];
    const text = (min = 0) => {
      let out = '';
      const length = min + Math.floor(next() * 8);
      for (let i = 0; i < length; i++) out += alphabet[Math.floor(next() * alphabet.length)];
      return out;
    };
    // Keys hold no `!` at the end (it would read as exclusion) and no `,` in columns.
    const key = () => text(1).replace(/!+$/, '') || 'k';
    for (let round = 0; round < 500; round++) {
      const state = {
        ...defaultState(),
        service: text(),
        range: '',
        from: text(1),
        to: text(1),
        q: text(),
        filters: Array.from({ length: Math.floor(next() * 3) }, () => ({ key: key(), value: text(), exclude: next() < 0.5 })),
        columns: Array.from({ length: Math.floor(next() * 3) }, () => key().replace(/,/g, ';')),
        event: text(),
      };
      const url = new URL(stateUrl(state), 'http://127.0.0.1');
      expect(parseState(url.pathname, url.search), JSON.stringify(state)).toEqual(state);
    }
  });

  it('a filter for a value replaces its opposite', () => {
    const filters = withFilter([{ key: 'env', value: 'prod', exclude: false }], { key: 'env', value: 'prod', exclude: true });
    expect(filters).toEqual([{ key: 'env', value: 'prod', exclude: true }]);
  });
});
