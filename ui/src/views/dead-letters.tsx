// The dead-letter queue: statistics, entries, the original event, and reprocess or
// delete (admin key), delete only after confirmation.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, apiKey, call, getJson, query } from '../lib/api';
import { pretty } from '../lib/json';
import { formatInstant } from '../lib/time';
import { state } from '../state';

interface Entry {
  id: string;
  eventId: string;
  service: string;
  failureReason: string;
  retryCount: number;
  lastAttemptAt: string;
  reprocessed: boolean;
  createdAt: string;
  originalEvent?: unknown;
}

interface Statistics {
  total: number;
  pending: number;
  reprocessed: number;
  byService: Record<string, number>;
  oldestEvent: string | null;
}

const LIMIT = 100;

export function DeadLettersView() {
  const zone = state.value.zone;
  const [entries, setEntries] = useState<Entry[]>([]);
  const [stats, setStats] = useState<Statistics | null>(null);
  const [open, setOpen] = useState<Entry | null>(null);
  const [notice, setNotice] = useState('');
  const [confirming, setConfirming] = useState<Entry | null>(null);
  const [generation, setGeneration] = useState(0);
  const refresh = () => setGeneration((n) => n + 1);
  useEffect(() => {
    Promise.all([getJson<{ events: Entry[] }>(query('/dlq', [['limit', String(LIMIT)]])), getJson<Statistics>('/dlq/statistics')])
      .then(([list, statistics]) => {
        setEntries(list.events);
        setStats(statistics);
      })
      .catch((error) => setNotice(error instanceof Error ? error.message : String(error)));
  }, [generation, apiKey.value]);
  const act = async (entry: Entry, method: 'PATCH' | 'DELETE') => {
    setNotice('');
    try {
      await call(method === 'PATCH' ? `/dlq/${entry.id}/reprocess` : `/dlq/${entry.id}`, { method });
      setNotice(method === 'PATCH' ? `Event ${entry.eventId} sent through the pipeline again.` : `Entry ${entry.id} deleted.`);
      setOpen(null);
      refresh();
    } catch (error) {
      const refusal = error instanceof ApiError && (error.status === 401 || error.status === 403);
      setNotice(refusal ? `Refused: ${(error as ApiError).message}` : String(error instanceof Error ? error.message : error));
    }
  };
  return (
    <section class="dlq" aria-label="Dead letters">
      <h1>Dead letters</h1>
      {stats && (
        <dl class="cards">
          <div>
            <dt>Total</dt>
            <dd data-testid="dlq-total">{stats.total}</dd>
          </div>
          <div>
            <dt>Pending</dt>
            <dd>{stats.pending}</dd>
          </div>
          <div>
            <dt>Reprocessed</dt>
            <dd>{stats.reprocessed}</dd>
          </div>
          <div>
            <dt>Oldest</dt>
            <dd>{stats.oldestEvent ? formatInstant(stats.oldestEvent, zone) : '—'}</dd>
          </div>
        </dl>
      )}
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <table class="entries">
        <thead>
          <tr>
            <th scope="col">Stored</th>
            <th scope="col">Service</th>
            <th scope="col">Reason</th>
            <th scope="col">Retries</th>
            <th scope="col">State</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((entry) => (
            <tr key={entry.id} class={open?.id === entry.id ? 'selected' : ''}>
              <td>
                <button
                  type="button"
                  class="link"
                  onClick={() => getJson<Entry>(`/dlq/${entry.id}`).then(setOpen, (error) => setNotice(String(error.message ?? error)))}
                >
                  {formatInstant(entry.createdAt, zone)}
                </button>
              </td>
              <td>{entry.service}</td>
              <td class="reason">{entry.failureReason}</td>
              <td>{entry.retryCount}</td>
              <td>{entry.reprocessed ? 'reprocessed' : 'pending'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!entries.length && <p class="hint">No dead letters.</p>}
      {open && (
        <aside class="drawer" aria-label="Dead letter">
          <header>
            <h2>{open.service}</h2>
            <button type="button" class="quiet" aria-label="Close" onClick={() => setOpen(null)}>
              ×
            </button>
          </header>
          <p>{open.failureReason}</p>
          <div class="actions">
            <button type="button" onClick={() => void act(open, 'PATCH')}>
              Reprocess
            </button>
            <button type="button" class="danger" onClick={() => setConfirming(open)}>
              Delete…
            </button>
          </div>
          <h3>Original event</h3>
          <pre class="json">{pretty(open.originalEvent)}</pre>
        </aside>
      )}
      {confirming && (
        <Confirm
          text={`Delete dead letter ${confirming.id}? Its event is gone for good.`}
          onAnswer={(yes) => {
            const entry = confirming;
            setConfirming(null);
            if (yes) void act(entry, 'DELETE');
          }}
        />
      )}
    </section>
  );
}

function Confirm({ text, onAnswer }: { text: string; onAnswer: (yes: boolean) => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => dialog.current?.showModal(), []);
  return (
    <dialog ref={dialog} aria-labelledby="confirm-text" onCancel={() => onAnswer(false)}>
      <p id="confirm-text">{text}</p>
      <div class="actions">
        <button type="button" class="quiet" onClick={() => onAnswer(false)}>
          Keep it
        </button>
        <button type="button" class="danger" onClick={() => onAnswer(true)}>
          Delete
        </button>
      </div>
    </dialog>
  );
}
