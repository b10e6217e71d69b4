// The console's state: the URL (the source of truth for what is shown) as a signal, and
// navigation that writes it back.

import { signal } from '@preact/signals';
import { type ConsoleState, parseState, stateUrl } from './lib/url';

export const state = signal<ConsoleState>(parseState(location.pathname, location.search));

addEventListener('popstate', () => {
  state.value = parseState(location.pathname, location.search);
});

/** Shows `patch` applied to the current state, as a new history entry unless `replace`. */
export function navigate(patch: Partial<ConsoleState>, replace = false) {
  const next = { ...state.value, ...patch };
  const url = stateUrl(next);
  if (url !== location.pathname + location.search) {
    if (replace) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
  }
  state.value = next;
}

type Theme = 'system' | 'light' | 'dark';
const THEME_STORAGE = 'aurore.theme';
export const theme = signal<Theme>((localStorage.getItem(THEME_STORAGE) as Theme | null) ?? 'system');

export function applyTheme(next: Theme) {
  theme.value = next;
  localStorage.setItem(THEME_STORAGE, next);
  if (next === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = next;
}
