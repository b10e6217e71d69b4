import { useEffect, useRef, useState } from 'preact/hooks';
import { apiKey, keyWanted, saveKey } from './lib/api';
import type { View } from './lib/url';
import { applyTheme, navigate, state, theme } from './state';
import { SearchView } from './views/search';
import { TailView } from './views/tail';
import { DeadLettersView } from './views/dead-letters';
import { HealthView } from './views/health';

const TABS: [View, string][] = [
  ['search', 'Search'],
  ['tail', 'Live tail'],
  ['dlq', 'Dead letters'],
  ['health', 'Health'],
];

export function App() {
  const view = state.value.view;
  return (
    <>
      <header class="top">
        <span class="brand">Aurore</span>
        <nav aria-label="Views">
          {TABS.map(([id, label]) => (
            <a
              key={id}
              href={id === 'search' ? '/ui/' : `/ui/${id}`}
              aria-current={view === id ? 'page' : undefined}
              onClick={(event) => {
                event.preventDefault();
                navigate({ view: id, event: '' });
              }}
            >
              {label}
            </a>
          ))}
        </nav>
        <button
          type="button"
          class="quiet"
          title="Colour scheme: follows the system, or light, or dark"
          onClick={() => applyTheme(theme.value === 'system' ? 'dark' : theme.value === 'dark' ? 'light' : 'system')}
        >
          Theme: {theme.value}
        </button>
        {apiKey.value && (
          <button type="button" class="quiet" onClick={() => saveKey('')}>
            Forget key
          </button>
        )}
      </header>
      <main id="main">
        {view === 'search' && <SearchView />}
        {view === 'tail' && <TailView />}
        {view === 'dlq' && <DeadLettersView />}
        {view === 'health' && <HealthView />}
      </main>
      {keyWanted.value && <KeyDialog admin={keyWanted.value === 'admin'} />}
    </>
  );
}

function KeyDialog({ admin }: { admin: boolean }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [key, setKey] = useState('');
  useEffect(() => dialog.current?.showModal(), []);
  return (
    <dialog ref={dialog} class="key-dialog" aria-labelledby="key-title" onClose={() => (keyWanted.value = '')}>
      <form
        method="dialog"
        onSubmit={(event) => {
          event.preventDefault();
          saveKey(key.trim());
        }}
      >
        <h2 id="key-title">{admin ? 'This needs an admin key' : 'This Aurore needs an API key'}</h2>
        <p>It is kept in this tab only (sessionStorage) and sent as <code>Authorization: Bearer</code>.</p>
        <label>
          {admin ? 'Admin key' : 'API key'}
          <input type="password" name="key" autoComplete="off" value={key} onInput={(e) => setKey(e.currentTarget.value)} autoFocus />
        </label>
        <div class="actions">
          <button type="button" class="quiet" onClick={() => (keyWanted.value = '')}>
            Cancel
          </button>
          <button type="submit" disabled={!key.trim()}>
            Use key
          </button>
        </div>
      </form>
    </dialog>
  );
}
