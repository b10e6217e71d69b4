// Rates from Prometheus counters sampled over time.

export interface Counters {
  stored: number;
  writeSeconds: number;
  writes: number;
}

export interface Sample extends Counters {
  at: number;
}

export interface Rate {
  at: number;
  storedPerSecond: number;
  /** Mean batch write over the interval; null when no batch was written. */
  writeMs: number | null;
}

/** Sums every series of `name` (all label sets) in Prometheus text. */
export function counter(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(rest.slice(rest.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

export function readCounters(text: string): Counters {
  return {
    stored: counter(text, 'aurore_events_stored_total'),
    writeSeconds: counter(text, 'aurore_batch_write_duration_seconds_sum'),
    writes: counter(text, 'aurore_batch_write_duration_seconds_count'),
  };
}

/** One rate per pair of consecutive samples; a counter that went down (a restart) reads as 0. */
export function rates(samples: Sample[]): Rate[] {
  const out: Rate[] = [];
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1], samples[i]];
    const seconds = Math.max(0.001, (b.at - a.at) / 1000);
    const writes = b.writes - a.writes;
    out.push({
      at: b.at,
      storedPerSecond: Math.max(0, b.stored - a.stored) / seconds,
      writeMs: writes > 0 ? ((b.writeSeconds - a.writeSeconds) / writes) * 1000 : null,
    });
  }
  return out;
}
