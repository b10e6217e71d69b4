// One event: its JSON exactly as stored, copy, filters from its values, a permalink and
// the events around it in its service.

import { useEffect, useRef, useState } from 'preact/hooks';
import { type EventPage, type StoredEvent, getJson, query } from '../lib/api';
import { flatten } from '../lib/fields';
import { pretty } from '../lib/json';
import { formatInstant } from '../lib/time';
import { stateUrl } from '../lib/url';
import { navigate, state } from '../state';
import { addFilter, results } from './search';

const AROUND = 10;
/** How far either side to look: well inside the API's longest range. */
const REACH_MS = 7 * 86_400_000;

/** Up to `AROUND` events each side of `event` in its service, oldest first. */
async function surrounding(event: StoredEvent): Promise<StoredEvent[]> {
  const base: [string, string][] = [['service', event.service], ['pageSize', String(AROUND + 1)], ['sortField', 'timestamp']];
  const at = new Date(event.timestamp).getTime();
  const [older, newer] = await Promise.all([
    getJson<EventPage>(query('/events', [...base, ['from', new Date(at - REACH_MS).toISOString()], ['to', event.timestamp], ['sortOrder', 'DESC']])),
    getJson<EventPage>(query('/events', [...base, ['from', event.timestamp], ['to', new Date(at + REACH_MS).toISOString()], ['sortOrder', 'ASC']])),
  ]);
  const byId = new Map<string, StoredEvent>();
  for (const one of [...older.events.reverse(), ...newer.events]) byId.set(one.id, one);
  return [...byId.values()];
}

export function Drawer() {
  const s = state.value;
  const index = results.value.findIndex((event) => event.id === s.event);
  const event = index >= 0 ? results.value[index] : undefined;
  const [around, setAround] = useState<StoredEvent[] | null>(null);
  const [copied, setCopied] = useState(false);
  const [failure, setFailure] = useState('');
  const panel = useRef<HTMLElement>(null);
  useEffect(() => {
    setAround(null);
    setCopied(false);
    setFailure('');
    panel.current?.focus();
  }, [s.event]);
  const close = () => navigate({ event: '' });
  if (!event) {
    return (
      <aside class="drawer" aria-label="Event" ref={panel} tabIndex={-1}>
        <header>
          <h2>Event</h2>
          <button type="button" class="quiet" onClick={close} aria-label="Close">
            ×
          </button>
        </header>
        <p class="hint">{results.value.length ? 'This event is not among the loaded ones.' : 'Loading…'}</p>
      </aside>
    );
  }
  const text = pretty(event);
  // The API wants `from` before `to`: the millisecond the event is shown with.
  const until = new Date(new Date(event.timestamp).getTime() + 1).toISOString();
  const permalink = stateUrl({ ...s, range: '', from: event.timestamp, to: until, q: '', filters: [], event: event.id });
  return (
    <aside class="drawer" aria-label="Event" ref={panel} tabIndex={-1}>
      <header>
        <h2>{formatInstant(event.timestamp, s.zone)}</h2>
        <span class="muted">
          {index + 1} of {results.value.length} · ← → to step
        </span>
        <button type="button" class="quiet" onClick={close} aria-label="Close">
          ×
        </button>
      </header>
      <div class="actions">
        <button
          type="button"
          onClick={() =>
            navigator.clipboard.writeText(text).then(
              () => setCopied(true),
              () => setFailure('The browser refused the clipboard.'),
            )
          }
        >
          {copied ? 'Copied' : 'Copy JSON'}
        </button>
        <a href={permalink} class="button">
          Permalink
        </a>
        <button
          type="button"
          onClick={() =>
            surrounding(event).then(setAround, (error) => setFailure(String(error instanceof Error ? error.message : error)))
          }
        >
          Surrounding events
        </button>
      </div>
      {failure && <p class="error">{failure}</p>}
      <table class="fields">
        <tbody>
          {[...flatten(event.metadata)].map(([key, value]) => (
            <tr key={key}>
              <th scope="row">{key}</th>
              <td>{value}</td>
              <td class="nowrap">
                <button type="button" class="link" aria-label={`Filter for ${key} = ${value}`} onClick={() => addFilter({ key, value, exclude: false })}>
                  filter for
                </button>{' '}
                <button type="button" class="link" aria-label={`Filter out ${key} = ${value}`} onClick={() => addFilter({ key, value, exclude: true })}>
                  filter out
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <pre class="json" data-testid="event-json">
        {text}
      </pre>
      {around && (
        <section aria-label="Surrounding events">
          <h3>Around it in {event.service}</h3>
          <ol class="around">
            {around.map((one) => (
              <li key={one.id} class={one.id === event.id ? 'selected' : ''}>
                <span class="time">{formatInstant(one.timestamp, s.zone)}</span> {one.message}
              </li>
            ))}
          </ol>
        </section>
      )}
    </aside>
  );
}
