import { computed, signal } from '@preact/signals';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, type EventPage, type Histogram as HistogramBody, type ServiceEntry, type StoredEvent, apiKey, getJson, query, queryProblem } from '../lib/api';
import { fieldCounts, flatten } from '../lib/fields';
import { PRESETS, type Range, formatInstant, iso, parseInstant, pickInterval, resolveRange } from '../lib/time';
import { type ConsoleState, type Filter, filterParams, withFilter } from '../lib/url';
import { navigate, state } from '../state';
import { Drawer } from './drawer';
import { Histogram } from './histogram';
import { ROW_HEIGHT, VirtualList } from './virtual-list';

const PAGE_SIZE = 500;

export const services = signal<ServiceEntry[]>([]);
export const results = signal<StoredEvent[]>([]);
const total = signal<number | null>(null);
const nextCursor = signal<string | null>(null);
const histogram = signal<HistogramBody | null>(null);
const searched = signal<Range | null>(null);
const loading = signal(false);
const error = signal('');
/** The row `j`/`k` are on. */
const focused = signal(0);

/** The selection a search is for: a new one starts over, the same one keeps its rows. */
function selection(s: ConsoleState): string {
  return JSON.stringify([s.service, s.range, s.from, s.to, s.zone, s.q, s.filters]);
}

function pageParams(s: ConsoleState, range: Range): [string, string][] {
  return [['service', s.service], ['from', iso(range.from)], ['to', iso(range.to)], ['q', s.q], ...filterParams(s.filters)];
}

function explain(failure: unknown): string {
  if (failure instanceof ApiError) return failure.retryAfter ? `${failure.message} (retry in ${failure.retryAfter} s)` : failure.message;
  return String(failure);
}

/** Bumped by every new search: answers to an older one are dropped, not shown under it. */
let generation = 0;

async function runSearch(s: ConsoleState) {
  const mine = ++generation;
  const range = resolveRange(s.range, s.from, s.to, s.zone, new Date());
  results.value = [];
  total.value = null;
  nextCursor.value = null;
  histogram.value = null;
  focused.value = 0;
  error.value = '';
  loading.value = false;
  searched.value = range;
  if (!s.service) return;
  if (!range) {
    error.value = 'The range needs a start before its end: a preset, ISO 8601 times, or YYYY-MM-DD HH:mm.';
    return;
  }
  loading.value = true;
  try {
    const params = pageParams(s, range);
    const [page, counts] = await Promise.all([
      getJson<EventPage>(query('/events', [...params, ['pageSize', String(PAGE_SIZE)], ['sortField', 'timestamp'], ['sortOrder', 'DESC']])),
      getJson<HistogramBody>(query('/events/histogram', [['service', s.service], ['from', iso(range.from)], ['to', iso(range.to)], ['interval', pickInterval(range)]])),
    ]);
    if (mine !== generation) return;
    results.value = page.events;
    total.value = page.total;
    nextCursor.value = page.next_cursor ?? null;
    histogram.value = counts;
  } catch (failure) {
    if (mine === generation) error.value = explain(failure);
  } finally {
    if (mine === generation) loading.value = false;
  }
}

async function loadOlder() {
  const range = searched.value;
  if (!range || !nextCursor.value || loading.value) return;
  const mine = generation;
  loading.value = true;
  try {
    const params = pageParams(state.value, range);
    const page = await getJson<EventPage>(query('/events', [...params, ['pageSize', String(PAGE_SIZE)], ['cursor', nextCursor.value]]));
    if (mine !== generation) return;
    results.value = [...results.value, ...page.events];
    nextCursor.value = page.next_cursor ?? null;
  } catch (failure) {
    if (mine === generation) error.value = explain(failure);
  } finally {
    if (mine === generation) loading.value = false;
  }
}

export async function loadServices() {
  services.value = (await getJson<{ services: ServiceEntry[] }>('/services')).services;
}

export function addFilter(filter: Filter) {
  navigate({ filters: withFilter(state.value.filters, filter), event: '' });
}

export function SearchView() {
  const s = state.value;
  const key = selection(s);
  useEffect(() => void loadServices().catch((failure) => (error.value = explain(failure))), [apiKey.value]);
  useEffect(() => {
    void runSearch(state.value);
  }, [key, apiKey.value]);
  return (
    <div class="search-layout">
      <SearchForm />
      {error.value && (
        <p class="error" role="alert">
          {error.value}
        </p>
      )}
      {!s.service && <p class="hint">Pick a service to search its events.</p>}
      {histogram.value && <Histogram histogram={histogram.value} zone={s.zone} filtered={Boolean(s.q || s.filters.length)} />}
      <div class="results-area">
        <Sidebar />
        <Results />
      </div>
      {s.event && <Drawer />}
    </div>
  );
}

function SearchForm() {
  const s = state.value;
  const [q, setQ] = useState(s.q);
  const [from, setFrom] = useState(s.from);
  const [to, setTo] = useState(s.to);
  useEffect(() => {
    setQ(s.q);
    setFrom(s.from);
    setTo(s.to);
  }, [s.q, s.from, s.to]);
  const queryInput = useRef<HTMLInputElement>(null);
  // Checked as it is typed, a moment after the last key, so a mistake shows where it is.
  const [queryError, setQueryError] = useState<string | null>(null);
  useEffect(() => {
    if (!q.trim()) {
      setQueryError(null);
      return;
    }
    let current = true;
    const timer = setTimeout(() => {
      void queryProblem(q).then((problem) => {
        if (current) setQueryError(problem);
      });
    }, 250);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [q]);
  useEffect(() => {
    const focusSearch = (event: KeyboardEvent) => {
      const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement || event.target instanceof HTMLTextAreaElement;
      if (event.key === '/' && !typing) {
        event.preventDefault();
        queryInput.current?.focus();
      }
    };
    addEventListener('keydown', focusSearch);
    return () => removeEventListener('keydown', focusSearch);
  }, []);
  const submit = (event: Event) => {
    event.preventDefault();
    const absolute = from.trim() && to.trim();
    const patch: Partial<ConsoleState> = { q: q.trim(), event: '' };
    if (absolute) {
      const start = parseInstant(from, s.zone);
      const end = parseInstant(to, s.zone);
      if (start && end) Object.assign(patch, { range: '', from: iso(start), to: iso(end) });
    }
    if (selection({ ...s, ...patch }) === selection(s)) void runSearch(s);
    else navigate(patch);
  };
  return (
    <form class="search-form" onSubmit={submit} role="search">
      <label>
        Service
        <select
          name="service"
          value={s.service}
          onChange={(event) => navigate({ service: event.currentTarget.value, event: '' })}
        >
          <option value="">Choose…</option>
          {services.value.map((entry) => (
            <option key={entry.service} value={entry.service}>
              {entry.service} ({entry.events.toLocaleString()})
            </option>
          ))}
          {s.service && !services.value.some((entry) => entry.service === s.service) && <option value={s.service}>{s.service}</option>}
        </select>
      </label>
      <fieldset class="presets">
        <legend>Range</legend>
        {Object.keys(PRESETS).map((preset) => (
          <button
            type="button"
            key={preset}
            aria-pressed={s.range === preset}
            onClick={() => navigate({ range: preset, from: '', to: '', event: '' })}
          >
            {preset}
          </button>
        ))}
      </fieldset>
      <label>
        From
        <input name="from" placeholder="2024-01-15 12:00 or ISO 8601" value={from ? formatMaybe(from, s.zone) : ''} onInput={(e) => setFrom(e.currentTarget.value)} />
      </label>
      <label>
        To
        <input name="to" placeholder="now" value={to ? formatMaybe(to, s.zone) : ''} onInput={(e) => setTo(e.currentTarget.value)} />
      </label>
      <button type="button" class="quiet" aria-pressed={s.zone === 'utc'} onClick={() => navigate({ zone: s.zone === 'utc' ? 'local' : 'utc' }, true)}>
        {s.zone === 'utc' ? 'UTC' : 'Local time'}
      </button>
      <label class="grow">
        Query
        <input
          ref={queryInput}
          name="q"
          type="search"
          placeholder='Press / to search: words, "a phrase", metadata.status>=500, -excluded'
          value={q}
          aria-invalid={queryError ? 'true' : undefined}
          aria-describedby={queryError ? 'query-error' : undefined}
          onInput={(e) => setQ(e.currentTarget.value)}
        />
        {queryError && (
          <span id="query-error" class="error query-error" role="status">
            {queryError}
          </span>
        )}
      </label>
      <button type="submit">Search</button>
      {s.filters.length > 0 && (
        <ul class="filters" aria-label="Filters">
          {s.filters.map((filter) => (
            <li key={`${filter.key}${filter.exclude}${filter.value}`} class={filter.exclude ? 'chip exclude' : 'chip'}>
              <span>
                {filter.key} {filter.exclude ? '≠' : '='} {filter.value}
              </span>
              <button type="button" aria-label={`Remove filter ${filter.key}`} onClick={() => navigate({ filters: s.filters.filter((f) => f !== filter), event: '' })}>
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
    </form>
  );
}

/** An ISO instant from the URL shown in the chosen zone; what someone typed stays. */
function formatMaybe(text: string, zone: ConsoleState['zone']): string {
  return /^\d{4}-\d{2}-\d{2}T.*Z$/.test(text) ? formatInstant(text, zone) : text;
}

const fields = computed(() => fieldCounts(results.value));

function Sidebar() {
  const loaded = results.value.length;
  if (!loaded) return null;
  return (
    <aside class="sidebar" aria-label="Fields">
      <h2>Fields in {loaded.toLocaleString()} loaded</h2>
      {fields.value.map((field) => (
        <details key={field.key} open={fields.value.length <= 6}>
          <summary>
            {field.key} <span class="muted">{field.present}</span>
          </summary>
          <button
            type="button"
            class="link"
            aria-pressed={state.value.columns.includes(field.key)}
            onClick={() => {
              const columns = state.value.columns;
              navigate({ columns: columns.includes(field.key) ? columns.filter((c) => c !== field.key) : [...columns, field.key] }, true);
            }}
          >
            {state.value.columns.includes(field.key) ? `Hide column ${field.key}` : `Show column ${field.key}`}
          </button>
          <ul>
            {field.top.map((top) => (
              <li key={top.value} class="value-row">
                <span class="value" title={top.value}>
                  {top.value}
                </span>
                <span class="muted">
                  {top.count} · {top.percent.toFixed(0)}%
                </span>
                <button type="button" class="link" aria-label={`Include ${field.key} = ${top.value}`} onClick={() => addFilter({ key: field.key, value: top.value, exclude: false })}>
                  +
                </button>
                <button type="button" class="link" aria-label={`Exclude ${field.key} = ${top.value}`} onClick={() => addFilter({ key: field.key, value: top.value, exclude: true })}>
                  −
                </button>
              </li>
            ))}
          </ul>
        </details>
      ))}
    </aside>
  );
}

function Results() {
  const s = state.value;
  const rows = results.value;
  const scroller = useRef<HTMLDivElement>(null);
  useEffect(() => {
    // One listener for the list and the drawer, there from the start: a key pressed the
    // moment the drawer opens is not lost.
    const move = (event: KeyboardEvent) => {
      if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement || document.querySelector('dialog[open]')) return;
      const count = results.value.length;
      if (state.value.event) {
        const current = results.value.findIndex((one) => one.id === state.value.event);
        if (event.key === 'Escape') navigate({ event: '' });
        else if ((event.key === 'ArrowRight' || event.key === 'ArrowLeft') && current >= 0) {
          const next = current + (event.key === 'ArrowRight' ? 1 : -1);
          if (next >= 0 && next < count) {
            focused.value = next;
            navigate({ event: results.value[next].id }, true);
          }
        }
        return;
      }
      if (!count) return;
      if (event.key === 'j' || event.key === 'k') {
        focused.value = Math.max(0, Math.min(count - 1, focused.value + (event.key === 'j' ? 1 : -1)));
        const element = scroller.current;
        const top = focused.value * ROW_HEIGHT;
        if (element && (top < element.scrollTop || top + ROW_HEIGHT > element.scrollTop + element.clientHeight)) {
          element.scrollTop = top - element.clientHeight / 2;
        }
      } else if (event.key === 'Enter' && !(event.target instanceof HTMLButtonElement) && !(event.target instanceof HTMLAnchorElement)) {
        navigate({ event: results.value[focused.value].id });
      }
    };
    addEventListener('keydown', move);
    return () => removeEventListener('keydown', move);
  }, []);
  if (!s.service) return null;
  return (
    <section class="results" aria-label="Events">
      <div class="results-head">
        <span data-testid="total">
          {total.value !== null ? `${total.value.toLocaleString()} events` : ''} {rows.length ? `· ${rows.length.toLocaleString()} loaded` : ''}
        </span>
        {loading.value && <span class="muted">Loading…</span>}
      </div>
      <div class="row header" aria-hidden="true">
        <span class="time">Time ({s.zone === 'utc' ? 'UTC' : 'local'})</span>
        {s.columns.map((column) => (
          <span key={column} class="col">
            {column}
          </span>
        ))}
        <span class="message">Message</span>
      </div>
      <VirtualList
        label="Events, newest first"
        items={rows}
        scroller={scroller}
        row={(event, index) => {
          const flat = s.columns.length ? flatten(event.metadata) : null;
          return (
            <button
              type="button"
              class={`row ${index === focused.value ? 'focused' : ''} ${event.id === s.event ? 'selected' : ''}`}
              data-id={event.id}
              onClick={() => {
                focused.value = index;
                navigate({ event: event.id });
              }}
            >
              <span class="time">{formatInstant(event.timestamp, s.zone)}</span>
              {s.columns.map((column) => (
                <span key={column} class="col">
                  {flat?.get(column) ?? ''}
                </span>
              ))}
              <span class="message">{event.message}</span>
            </button>
          );
        }}
      />
      {!rows.length && !loading.value && !error.value && <NothingHere />}
      {nextCursor.value && (
        <button type="button" class="load-older" onClick={() => void loadOlder()} disabled={loading.value}>
          Load older
        </button>
      )}
    </section>
  );
}

/** An empty range, and where the service's latest events are when it is not there. */
function NothingHere() {
  const s = state.value;
  const latest = services.value.find((entry) => entry.service === s.service)?.latestHour;
  const range = searched.value;
  const hour = latest ? new Date(latest) : null;
  const elsewhere = hour && range && (hour.getTime() + 3_600_000 <= range.from.getTime() || hour > range.to);
  return (
    <p class="hint">
      No events match in this range.{' '}
      {elsewhere && !s.q && !s.filters.length && (
        <button type="button" class="link" onClick={() => zoomTo(hour, new Date(hour.getTime() + 3_600_000 - 1))}>
          Show the latest hour of {s.service} ({formatInstant(hour, s.zone).slice(0, 16)})
        </button>
      )}
    </p>
  );
}

export function zoomTo(from: Date, to: Date) {
  navigate({ range: '', from: iso(from), to: iso(to), event: '' });
}

