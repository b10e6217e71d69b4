// Every state of the console lives in its URL, so a link reproduces the view. The
// filters use the API's own spelling: `metadata.<key>=<value>`, `metadata.<key>!=<value>`.

export type View = 'search' | 'tail' | 'dlq' | 'health';
export type Zone = 'local' | 'utc';

export interface Filter {
  key: string;
  value: string;
  exclude: boolean;
}

export interface ConsoleState {
  view: View;
  service: string;
  /** A relative preset (`15m`, `1h`, `24h`, `7d`); empty when `from`/`to` are absolute. */
  range: string;
  from: string;
  to: string;
  zone: Zone;
  q: string;
  filters: Filter[];
  /** Metadata keys shown as columns. */
  columns: string[];
  /** The event open in the drawer. */
  event: string;
}

const BASE = '/ui/';
const VIEWS: View[] = ['search', 'tail', 'dlq', 'health'];
const PREFIX = 'metadata.';

const DEFAULT_RANGE = '1h';

export function defaultState(): ConsoleState {
  return { view: 'search', service: '', range: DEFAULT_RANGE, from: '', to: '', zone: 'local', q: '', filters: [], columns: [], event: '' };
}

export function parseState(pathname: string, search: string): ConsoleState {
  const state = defaultState();
  const rest = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : '';
  const view = rest.split('/')[0] as View;
  if (VIEWS.includes(view)) state.view = view;
  const params = new URLSearchParams(search);
  state.service = params.get('service') ?? '';
  state.from = params.get('from') ?? '';
  state.to = params.get('to') ?? '';
  state.range = params.get('range') ?? (state.from && state.to ? '' : DEFAULT_RANGE);
  state.zone = params.get('zone') === 'utc' ? 'utc' : 'local';
  state.q = params.get('q') ?? '';
  state.columns = (params.get('columns') ?? '').split(',').filter(Boolean);
  state.event = params.get('event') ?? '';
  for (const [name, value] of params) {
    if (!name.startsWith(PREFIX)) continue;
    const exclude = name.endsWith('!');
    const key = name.slice(PREFIX.length, exclude ? -1 : undefined);
    if (key) state.filters.push({ key, value, exclude });
  }
  return state;
}

/** The filters as API query parameters. */
export function filterParams(filters: Filter[]): [string, string][] {
  return filters.map((filter) => [`${PREFIX}${filter.key}${filter.exclude ? '!' : ''}`, filter.value]);
}

export function stateUrl(state: ConsoleState): string {
  const params = new URLSearchParams();
  const set = (name: string, value: string) => value && params.set(name, value);
  set('service', state.service);
  if (state.range) set('range', state.range);
  else {
    set('from', state.from);
    set('to', state.to);
  }
  if (state.zone === 'utc') set('zone', 'utc');
  set('q', state.q);
  for (const [name, value] of filterParams(state.filters)) params.append(name, value);
  set('columns', state.columns.join(','));
  set('event', state.event);
  const path = BASE + (state.view === 'search' ? '' : state.view);
  const query = params.toString();
  return query ? `${path}?${query}` : path;
}

/** Adds `filter`, replacing one on the same key with the same value. */
export function withFilter(filters: Filter[], filter: Filter): Filter[] {
  const others = filters.filter((f) => !(f.key === filter.key && f.value === filter.value));
  return [...others, filter];
}
