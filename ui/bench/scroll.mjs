// How the results list behaves with 100,000 rows loaded: loads them through the console's
// own "Load older" (cursor pages), then scrolls the list top to bottom one screen per
// animation frame and reports frame times and the JS heap. A benchmark, not a test:
// `just ui-bench` (the machine is noisy; compare figures from one run).

import { launch, openPage, post, startAurore, stored } from '../e2e/harness.mjs';

const ROWS = Number(process.env.ROWS ?? 100_000);
const aurore = await startAurore();
const browser = await launch();
try {
  const now = Date.now();
  const from = new Date(now - 3_600_000).toISOString();
  const to = new Date(now + 60_000).toISOString();
  for (let start = 0; start < ROWS; start += 10_000) {
    const batch = Array.from({ length: Math.min(10_000, ROWS - start) }, (_, k) => {
      const i = start + k;
      return { timestamp: new Date(now - 3_000_000 + i * 25).toISOString(), service: 'bench', message: `event ${i} of the scroll bench`, metadata: { i, shard: `s${i % 16}` } };
    });
    await post(aurore.address, batch);
  }
  await stored(aurore.address, 'bench', ROWS, from, to);

  const { page, context } = await openPage(browser);
  const loadStarted = performance.now();
  await page.goto(`${aurore.address}/ui/?service=bench&from=${from}&to=${to}&columns=shard`);
  const loaded = page.getByTestId('total');
  await loaded.filter({ hasText: 'loaded' }).waitFor();
  const loadedRows = async () => Number((/([\d,]+) loaded/.exec(await loaded.textContent()) ?? ['', '0'])[1].replace(/,/g, ''));
  for (let rows = await loadedRows(); rows < ROWS; ) {
    await page.click('button.load-older');
    await page.waitForFunction((before) => {
      const text = document.querySelector('[data-testid="total"]')?.textContent ?? '';
      return Number((/([\d,]+) loaded/.exec(text) ?? ['', '0'])[1].replace(/,/g, '')) > before;
    }, rows);
    rows = await loadedRows();
  }
  const loadSeconds = (performance.now() - loadStarted) / 1000;

  const frames = await page.locator('.results .scroller').evaluate(
    (scroller) =>
      new Promise((resolve) => {
        const times = [];
        let last = performance.now();
        const step = () => {
          const now = performance.now();
          times.push(now - last);
          last = now;
          if (scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 1 || times.length > 2000) resolve(times.slice(1));
          else {
            scroller.scrollTop += scroller.clientHeight * 25;
            requestAnimationFrame(step);
          }
        };
        requestAnimationFrame(step);
      }),
  );
  const sorted = [...frames].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))].toFixed(1);
  const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
  const rows = await page.locator('.vrow').count();
  console.log(`rows loaded: ${ROWS.toLocaleString('en-US')} in ${loadSeconds.toFixed(1)} s (${Math.ceil(ROWS / 500)} cursor pages)`);
  console.log(`scroll, ${frames.length} frames of 25 screens each: frame time p50 ${at(0.5)} ms, p95 ${at(0.95)} ms, max ${at(1)} ms`);
  console.log(`rows in the DOM: ${rows}; JS heap used: ${(heap / 1048576).toFixed(0)} MiB`);
  await context.close();
} finally {
  await browser.close();
  await aurore.stop();
}
