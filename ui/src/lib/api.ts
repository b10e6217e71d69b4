// Aurore's public API, as the console calls it: the key (when the API asks for one) from
// sessionStorage as `Authorization: Bearer`, never in a URL.

import { signal } from '@preact/signals';
import { parseExact } from './json';
import { type Frame, SseReader } from './sse';

const KEY_STORAGE = 'aurore.apiKey';

export const apiKey = signal<string>(sessionStorage.getItem(KEY_STORAGE) ?? '');
/** Set when the API refused for want of a key (`client`) or of an admin key (`admin`). */
export const keyWanted = signal<'' | 'client' | 'admin'>('');

export function saveKey(key: string) {
  apiKey.value = key;
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  keyWanted.value = '';
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfter: string | null = null,
  ) {
    super(message);
  }
}

export interface StoredEvent {
  id: string;
  eventId: string;
  timestamp: string;
  service: string;
  message: string;
  metadata?: Record<string, unknown> | null;
  ingestedAt: string;
  createdAt: string;
}

export interface EventPage {
  events: StoredEvent[];
  total: number | null;
  next_cursor?: string | null;
}

export interface Histogram {
  buckets: { start: string; count: number }[];
  total: number;
  interval: string;
}

export interface ServiceEntry {
  service: string;
  events: number;
  latestHour: string;
}

export async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (apiKey.value) headers.set('Authorization', `Bearer ${apiKey.value}`);
  const response = await fetch(path, { ...init, headers });
  if (response.ok) return response;
  const text = await response.text();
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = JSON.parse(text) as { message?: string | string[] };
    if (body.message) message = Array.isArray(body.message) ? body.message.join('; ') : body.message;
  } catch {
    // Not JSON: the status says it.
  }
  if (response.status === 401) keyWanted.value = 'client';
  if (response.status === 403) keyWanted.value = 'admin';
  throw new ApiError(response.status, message, response.headers.get('Retry-After'));
}

export async function getJson<T>(path: string): Promise<T> {
  const response = await call(path, { headers: { Accept: 'application/json' } });
  return parseExact<T>(await response.text());
}

/** Why `q` does not parse (the server's words, with the byte where it fails), or null. */
export async function queryProblem(q: string): Promise<string | null> {
  try {
    await call(query('/events/query/explain', [['q', q]]), { headers: { Accept: 'application/json' } });
    return null;
  } catch (error) {
    return error instanceof ApiError && error.status === 400 ? error.message : null;
  }
}

/** `path` with `params`; empty ones are left out, except filters (`metadata.env=` asks for an empty value). */
export function query(path: string, params: [string, string][]): string {
  const search = new URLSearchParams(params.filter(([name, value]) => value !== '' || name.startsWith('metadata.')));
  return `${path}?${search}`;
}

export interface TailHandlers {
  /** The stream is open: the server subscribed this reader before answering. */
  onOpen: () => void;
  onEvent: (event: StoredEvent) => void;
  onMissed: (missed: number) => void;
}

/**
 * Reads `GET /events/tail` with fetch rather than EventSource, which cannot send a key.
 * Resolves when the stream ends or `abort` fires.
 */
export async function tail(path: string, handlers: TailHandlers, abort: AbortSignal): Promise<void> {
  const response = await call(path, { signal: abort, headers: { Accept: 'text/event-stream' } });
  handlers.onOpen();
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const frames = new SseReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const frame of frames.push(value)) dispatch(frame, handlers);
    }
  } catch (error) {
    if (!abort.aborted) throw error;
  }
}

function dispatch(frame: Frame, handlers: TailHandlers) {
  const body = parseExact<unknown>(frame.data);
  if (frame.event === 'missed') handlers.onMissed((body as { missed: number }).missed);
  else handlers.onEvent(body as StoredEvent);
}
