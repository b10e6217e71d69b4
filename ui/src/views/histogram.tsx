// Counts over the range; drag across bars (or click one) to zoom into that stretch.

import { useRef, useState } from 'preact/hooks';
import type { Histogram as HistogramBody } from '../lib/api';
import { formatInstant } from '../lib/time';
import type { Zone } from '../lib/url';
import { zoomTo } from './search';

const WIDTH = 1000;
const HEIGHT = 90;

const INTERVAL_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

function intervalMs(interval: string): number {
  return Number(interval.slice(0, -1)) * (INTERVAL_MS[interval.slice(-1)] ?? 60_000);
}

/** `filtered`: the search has `q` or metadata filters, which the rollup counts cannot apply. */
export function Histogram({ histogram, zone, filtered }: { histogram: HistogramBody; zone: Zone; filtered: boolean }) {
  const buckets = histogram.buckets;
  const max = Math.max(1, ...buckets.map((bucket) => bucket.count));
  const barWidth = WIDTH / Math.max(1, buckets.length);
  const svg = useRef<SVGSVGElement>(null);
  const [drag, setDrag] = useState<{ start: number; end: number } | null>(null);
  const indexAt = (clientX: number) => {
    const box = svg.current!.getBoundingClientRect();
    const ratio = (clientX - box.left) / Math.max(1, box.width);
    return Math.max(0, Math.min(buckets.length - 1, Math.floor(ratio * buckets.length)));
  };
  const zoom = (first: number, last: number) => {
    const [a, b] = first <= last ? [first, last] : [last, first];
    const from = new Date(buckets[a].start);
    const to = new Date(new Date(buckets[b].start).getTime() + intervalMs(histogram.interval) - 1);
    zoomTo(from, to);
  };
  return (
    <figure class="histogram" aria-label={`Events per ${histogram.interval}: ${histogram.total} in all`}>
      <svg
        ref={svg}
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        preserveAspectRatio="none"
        role="img"
        aria-label="Histogram: drag to zoom"
        onPointerDown={(event) => {
          if (!buckets.length) return;
          const index = indexAt(event.clientX);
          setDrag({ start: index, end: index });
          (event.currentTarget as Element).setPointerCapture?.(event.pointerId);
        }}
        onPointerMove={(event) => drag && setDrag({ ...drag, end: indexAt(event.clientX) })}
        onPointerUp={() => {
          if (drag) zoom(drag.start, drag.end);
          setDrag(null);
        }}
      >
        {buckets.map((bucket, index) => {
          const height = (bucket.count / max) * (HEIGHT - 4);
          const inDrag = drag && index >= Math.min(drag.start, drag.end) && index <= Math.max(drag.start, drag.end);
          return (
            <rect
              key={bucket.start}
              class={inDrag ? 'bar picked' : 'bar'}
              data-count={bucket.count}
              x={index * barWidth + 0.5}
              y={HEIGHT - height}
              width={Math.max(0.5, barWidth - 1)}
              height={height}
            >
              <title>
                {formatInstant(bucket.start, zone)}: {bucket.count}
              </title>
            </rect>
          );
        })}
      </svg>
      <figcaption>
        <span>{buckets.length ? formatInstant(buckets[0].start, zone) : ''}</span>
        <span data-testid="histogram-total">
          {histogram.total.toLocaleString()} events{filtered ? ' of the service, before filters' : ''} · per {histogram.interval}
        </span>
        <span>{buckets.length ? formatInstant(buckets[buckets.length - 1].start, zone) : ''}</span>
      </figcaption>
    </figure>
  );
}
