// A list that renders only the rows in view, so 100,000 loaded rows scroll like 100.

import type { ComponentChildren, RefObject } from 'preact';
import { useLayoutEffect, useState } from 'preact/hooks';

export const ROW_HEIGHT = 30;
const OVERSCAN = 10;

interface Props<T> {
  items: T[];
  row: (item: T, index: number) => ComponentChildren;
  scroller: RefObject<HTMLDivElement | null>;
  onScroll?: (element: HTMLDivElement) => void;
  label: string;
}

export function VirtualList<T>({ items, row, scroller, onScroll, label }: Props<T>) {
  const [view, setView] = useState({ top: 0, height: 600 });
  useLayoutEffect(() => {
    const element = scroller.current;
    if (!element) return;
    const measure = () => setView({ top: element.scrollTop, height: element.clientHeight || 600 });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, [scroller]);
  const first = Math.max(0, Math.floor(view.top / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(items.length, Math.ceil((view.top + view.height) / ROW_HEIGHT) + OVERSCAN);
  return (
    <div
      class="scroller"
      ref={scroller}
      role="list"
      aria-label={label}
      tabIndex={0}
      onScroll={(event) => {
        const element = event.currentTarget;
        setView({ top: element.scrollTop, height: element.clientHeight || 600 });
        onScroll?.(element);
      }}
    >
      <div style={{ height: `${items.length * ROW_HEIGHT}px`, position: 'relative' }}>
        {items.slice(first, last).map((item, offset) => (
          <div key={first + offset} class="vrow" role="listitem" style={{ top: `${(first + offset) * ROW_HEIGHT}px` }}>
            {row(item, first + offset)}
          </div>
        ))}
      </div>
    </div>
  );
}
