// Readiness, buffer, journal, breaker and database from `/health/detailed`; throughput
// and mean batch-write latency from the Prometheus counters of `/metrics`, sampled every
// few seconds while the page is open (the console keeps the history, not the server).

import { useEffect, useState } from 'preact/hooks';
import { call, getJson } from '../lib/api';
import { type Sample, rates, readCounters } from '../lib/metrics';

const POLL_MS = 3000;
const KEEP = 100;

interface Detailed {
  status: string;
  uptime: number;
  server: { status: number; message: string };
  database: {
    status: string;
    queryLatencyMs?: number;
    replica?: { status: string; replayLagSeconds?: number; error?: string };
  };
  buffer: { status: string; buffer: { size: number; capacity: number; utilization_percent: string; spilled: number } };
  journal: { status: string; bytes: number; capacityBytes: number; segments: number; utilizationPercent: string };
  circuitBreaker: { state: string; failureCount: number; lastError: string | null };
  memory: { rss: number | null };
}

export function HealthView() {
  const [detailed, setDetailed] = useState<Detailed | null>(null);
  const [ready, setReady] = useState<string>('…');
  const [samples, setSamples] = useState<Sample[]>([]);
  const [failure, setFailure] = useState('');
  useEffect(() => {
    let stopped = false;
    const poll = async () => {
      try {
        const [report, text] = await Promise.all([
          getJson<Detailed>('/health/detailed'),
          call('/metrics/prometheus').then((response) => response.text()),
        ]);
        const readiness = await fetch('/health/ready').then((response) => (response.ok ? 'ready' : `not ready (${response.status})`));
        if (stopped) return;
        setDetailed(report);
        setReady(readiness);
        setSamples((previous) => [...previous.slice(-KEEP + 1), { at: Date.now(), ...readCounters(text) }]);
        setFailure('');
      } catch (error) {
        if (!stopped) setFailure(error instanceof Error ? error.message : String(error));
      }
    };
    void poll();
    const timer = setInterval(poll, POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, []);
  const series = rates(samples);
  const latest = series[series.length - 1];
  return (
    <section class="health" aria-label="Health">
      <h1>Health</h1>
      {failure && <p class="error">{failure}</p>}
      {detailed && (
        <dl class="cards">
          <Card title="Readiness" value={ready} status={ready === 'ready' ? 'healthy' : 'unhealthy'} />
          <Card title="Overall" value={detailed.status} status={detailed.status} />
          <Card title="Database" value={`${detailed.database.status}${detailed.database.queryLatencyMs !== undefined ? ` · ${detailed.database.queryLatencyMs} ms` : ''}`} status={detailed.database.status} />
          {detailed.database.replica && (
            <Card
              title="Read replica"
              value={detailed.database.replica.error ?? `${detailed.database.replica.status} · ${detailed.database.replica.replayLagSeconds?.toFixed(1)} s behind`}
              status={detailed.database.replica.status}
            />
          )}
          <Card title="Circuit breaker" value={`${detailed.circuitBreaker.state}${detailed.circuitBreaker.failureCount ? ` · ${detailed.circuitBreaker.failureCount} failures` : ''}`} status={detailed.circuitBreaker.state === 'CLOSED' ? 'healthy' : 'degraded'} />
          <Card title="Buffer" value={`${detailed.buffer.buffer.size.toLocaleString()} / ${detailed.buffer.buffer.capacity.toLocaleString()} (${detailed.buffer.buffer.utilization_percent}%)`} status={detailed.buffer.status} />
          <Card title="Journal" value={`${(detailed.journal.bytes / 1048576).toFixed(1)} MiB in ${detailed.journal.segments} segments (${detailed.journal.utilizationPercent}%)`} status={detailed.journal.status} />
          <Card title="Stored / s" value={latest ? latest.storedPerSecond.toFixed(1) : '…'} status="healthy" />
          <Card title="Mean batch write" value={latest?.writeMs !== null && latest ? `${latest.writeMs.toFixed(1)} ms` : '—'} status="healthy" />
        </dl>
      )}
      <Spark title="Events stored per second" values={series.map((point) => point.storedPerSecond)} />
      <Spark title="Mean batch write, ms" values={series.map((point) => point.writeMs ?? 0)} />
      <p class="muted">Sampled every {POLL_MS / 1000} s while this page is open; the last {KEEP} samples are kept.</p>
    </section>
  );
}

function Card({ title, value, status }: { title: string; value: string; status: string }) {
  return (
    <div class={`card ${status}`}>
      <dt>{title}</dt>
      <dd>{value}</dd>
    </div>
  );
}

function Spark({ title, values }: { title: string; values: number[] }) {
  const max = Math.max(1e-9, ...values);
  const points = values.map((value, index) => `${(index / Math.max(1, values.length - 1)) * 300},${40 - (value / max) * 38}`).join(' ');
  return (
    <figure class="spark">
      <figcaption>
        {title} <span class="muted">(max {max >= 1e-6 ? max.toFixed(1) : 0})</span>
      </figcaption>
      <svg viewBox="0 0 300 40" preserveAspectRatio="none" role="img" aria-label={title}>
        <polyline points={points} fill="none" stroke="currentColor" stroke-width="1.5" />
      </svg>
    </figure>
  );
}
