// New events as they are stored. Follows the newest while the list is scrolled to the
// bottom; scrolling up pauses that and counts what arrives meanwhile.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, type StoredEvent, apiKey, query, tail } from '../lib/api';
import { formatInstant } from '../lib/time';
import { filterParams } from '../lib/url';
import { navigate, state } from '../state';
import { loadServices, services } from './search';
import { ROW_HEIGHT, VirtualList } from './virtual-list';

/** Rows kept; older ones are dropped as new ones come. */
const TAIL_CAP = 5000;

type Line = { kind: 'event'; event: StoredEvent } | { kind: 'missed'; missed: number; at: Date };

export function TailView() {
  const s = state.value;
  const [lines, setLines] = useState<Line[]>([]);
  const [following, setFollowing] = useState(true);
  const [unseen, setUnseen] = useState(0);
  const [status, setStatus] = useState('connecting');
  const scroller = useRef<HTMLDivElement>(null);
  const followingRef = useRef(true);
  followingRef.current = following;
  const filters = JSON.stringify(s.filters);
  // A refusal shows the key dialog; the list is only a convenience here.
  useEffect(() => void loadServices().catch(() => undefined), [apiKey.value]);
  useEffect(() => {
    const abort = new AbortController();
    setLines([]);
    setUnseen(0);
    const add = (line: Line) => {
      setLines((previous) => {
        const next = previous.length >= TAIL_CAP ? previous.slice(previous.length - TAIL_CAP + 1) : previous.slice();
        const dropped = previous.length - next.length;
        const element = scroller.current;
        // Rows dropped above the view would shift it: keep what the reader looks at in place.
        if (dropped > 0 && element && !followingRef.current) element.scrollTop -= dropped * ROW_HEIGHT;
        next.push(line);
        return next;
      });
      if (!followingRef.current) setUnseen((count) => count + 1);
    };
    const path = query('/events/tail', [['service', s.service], ['q', s.q], ...filterParams(s.filters)]);
    setStatus('connecting');
    tail(path, { onOpen: () => setStatus('live'), onEvent: (event) => add({ kind: 'event', event }), onMissed: (missed) => add({ kind: 'missed', missed, at: new Date() }) }, abort.signal)
      .then(() => !abort.signal.aborted && setStatus('ended'))
      .catch((error) => setStatus(error instanceof ApiError ? error.message : 'disconnected'));
    return () => abort.abort();
  }, [s.service, s.q, filters, apiKey.value]);
  useEffect(() => {
    const element = scroller.current;
    if (following && element) element.scrollTop = element.scrollHeight;
  }, [lines, following]);
  const jump = () => {
    setFollowing(true);
    setUnseen(0);
  };
  return (
    <section class="tail" aria-label="Live tail">
      <div class="tail-head">
        <label>
          Service
          <select name="service" value={s.service} onChange={(event) => navigate({ service: event.currentTarget.value }, true)}>
            <option value="">All services</option>
            {services.value.map((entry) => (
              <option key={entry.service} value={entry.service}>
                {entry.service}
              </option>
            ))}
            {s.service && !services.value.some((entry) => entry.service === s.service) && <option value={s.service}>{s.service}</option>}
          </select>
        </label>
        <span class="status" data-testid="tail-status" data-state={following ? 'following' : 'paused'}>
          {status === 'live' ? (following ? '● Live' : '❚❚ Paused') : status} · {lines.length.toLocaleString()} shown (last {TAIL_CAP.toLocaleString()} kept)
        </span>
        {!following && (
          <button type="button" onClick={jump} data-testid="tail-resume">
            {unseen.toLocaleString()} new — jump to latest
          </button>
        )}
      </div>
      <VirtualList
        label="Tailed events, oldest first"
        items={lines}
        scroller={scroller}
        onScroll={(element) => {
          const atBottom = element.scrollTop + element.clientHeight >= element.scrollHeight - ROW_HEIGHT / 2;
          if (atBottom && !following) jump();
          else if (!atBottom && following) setFollowing(false);
        }}
        row={(line) =>
          line.kind === 'event' ? (
            <div class="row" data-id={line.event.id}>
              <span class="time">{formatInstant(line.event.timestamp, s.zone)}</span>
              <span class="col">{line.event.service}</span>
              <span class="message">{line.event.message}</span>
            </div>
          ) : (
            <div class="row missed" role="status">
              {line.missed.toLocaleString()} events missed: this tab read slower than they were stored
            </div>
          )
        }
      />
    </section>
  );
}
