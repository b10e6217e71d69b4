// The console in Chromium against the real service, keys off: search, histogram, zoom,
// paging, the drawer, tail, URL state, keyboard, accessibility and looks.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { axeViolations, launch, minutesAgo, openPage, post, root, screenshot, startAurore, stored } from './harness.mjs';

let aurore;
let browser;
const from = minutesAgo(60);
const to = new Date(Date.now() + 5 * 60_000).toISOString();
// Past 2^64: a double, or a 64-bit integer, would change it.
const BIG = '123456789012345678901234567890';

before(async () => {
  aurore = await startAurore();
  browser = await launch();
  // The README's sample, and a service with more events than one page.
  await post(aurore.address, { timestamp: '2024-01-15T10:30:00.000Z', service: 'auth-service', message: 'User login successful', metadata: { user_id: '12345', ip_address: '192.168.1.1' } });
  const checkout = Array.from({ length: 1200 }, (_, i) => ({
    timestamp: minutesAgo(55 - (i % 55) - i / 10_000),
    service: 'checkout',
    message: `order ${i} ${i % 3 === 0 ? 'failed' : 'placed'}`,
    metadata: { env: i % 4 === 0 ? 'prod' : 'dev', region: i % 2 ? 'eu' : 'us' },
  }));
  for (let i = 0; i < checkout.length; i += 400) await post(aurore.address, checkout.slice(i, i + 400));
  await fetch(`${aurore.address}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: `{"timestamp":"${minutesAgo(1)}","service":"exact","message":"big number","metadata":{"id":${BIG}}}`,
  });
  await stored(aurore.address, 'checkout', 1200, from, to);
  await stored(aurore.address, 'auth-service', 1, '2024-01-15T00:00:00Z', '2024-01-16T00:00:00Z');
  await stored(aurore.address, 'exact', 1, from, to);
});

after(async () => {
  await browser?.close();
  await aurore?.stop();
});

const searchUrl = (params) => `${aurore.address}/ui/?${new URLSearchParams(params)}`;

/** Runs `run` on a fresh page; no request may leave 127.0.0.1 and nothing may be logged
 * as an error, except what `expected` matches (the browser logs every 4xx it fetched). */
async function checked(t, run, expected = null) {
  const opened = await openPage(browser);
  try {
    await run(opened.page, opened);
  } finally {
    await opened.context.close();
  }
  assert.deepEqual(opened.offsite, [], 'requests left 127.0.0.1');
  assert.deepEqual(opened.errors.filter((error) => !expected?.test(error)), [], 'console errors');
}

test('opening / shows the console, and the README sample is one search away; paint time and bundle size', async (t) => {
  await checked(t, async (page) => {
    await page.goto(`${aurore.address}/`);
    assert.equal(new URL(page.url()).pathname, '/ui/');
    assert.equal(await page.locator('meta[name="aurore-console"]').getAttribute('content'), 'built', 'the placeholder page was served');
    const paint = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
    assert.ok(paint !== undefined && paint < 1000, `first contentful paint ${paint} ms`);
    console.log(`first contentful paint: ${paint.toFixed(0)} ms`);
    // Its timestamp is long past the default last hour: the console offers its latest hour.
    await page.selectOption('select[name="service"]', 'auth-service');
    await page.getByRole('button', { name: /Show the latest hour of auth-service/ }).click();
    await page.getByText('User login successful').waitFor();
    assert.match(await page.getByTestId('total').textContent(), /^1 events/);
  });
  const assets = join(root, 'ui', 'dist', 'assets');
  const js = readdirSync(assets).filter((name) => name.endsWith('.js'));
  const gzipped = js.reduce((sum, name) => sum + gzipSync(readFileSync(join(assets, name))).length, 0);
  console.log(`first view JS: ${(gzipped / 1024).toFixed(1)} KiB gzip in ${js.length} file(s)`);
  assert.ok(gzipped <= 60 * 1024, `${gzipped} bytes of gzipped JS`);
});

test('a posted event is found by search with q and shows exact large integers', async (t) => {
  await checked(t, async (page) => {
    await page.goto(searchUrl({ service: 'exact', range: '1h' }));
    await page.getByText('big number').click();
    const json = await page.getByTestId('event-json').textContent();
    assert.ok(json.includes(`"id": ${BIG}`), json);
    await page.goto(searchUrl({ service: 'checkout', range: '1h' }));
    await page.fill('input[name="q"]', ' order 1199 ');
    await page.press('input[name="q"]', 'Enter');
    await page.waitForURL(/q=order/);
    await page.locator('[data-testid="total"]', { hasText: /^1 events/ }).waitFor();
    await page.getByText('order 1199 placed').waitFor();
  });
});

test('the search bar points at a query mistake as it is typed, and runs the filter language', async (t) => {
  await checked(t, async (page) => {
    await page.goto(searchUrl({ service: 'checkout', range: '1h' }));
    await page.fill('input[name="q"]', '(order OR refund');
    await page.locator('#query-error', { hasText: /at byte 16: expected a closing parenthesis/ }).waitFor();
    assert.equal(await page.getAttribute('input[name="q"]', 'aria-invalid'), 'true');
    await page.fill('input[name="q"]', '"order 1199" OR "order 1198"');
    await page.locator('#query-error').waitFor({ state: 'detached' });
    await page.press('input[name="q"]', 'Enter');
    await page.locator('[data-testid="total"]', { hasText: /^2 events/ }).waitFor();
  }, /status of 400 \(Bad Request\)/);
});

test('histogram bars sum to the page total, and a drag zooms the URL range', async (t) => {
  await checked(t, async (page) => {
    await page.goto(searchUrl({ service: 'checkout', range: '1h' }));
    await page.locator('[data-testid="total"]', { hasText: /1,200 events/ }).waitFor();
    const counts = await page.locator('rect.bar').evaluateAll((bars) => bars.map((bar) => Number(bar.dataset.count)));
    assert.equal(counts.reduce((a, b) => a + b, 0), 1200);
    const box = await page.locator('.histogram svg').boundingBox();
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    await page.waitForURL(/from=/);
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('range'), null);
    const zoomedFrom = new Date(url.searchParams.get('from'));
    const zoomedTo = new Date(url.searchParams.get('to'));
    assert.ok(zoomedFrom > new Date(from) && zoomedTo < new Date(to) && zoomedFrom < zoomedTo, `${zoomedFrom} .. ${zoomedTo}`);
    const total = Number((await page.getByTestId('histogram-total').textContent()).replace(/[^\d].*$/, '').replace(/,/g, ''));
    assert.ok(total > 0 && total < 1200, `zoomed total ${total}`);
  });
});

test('load older walks the cursor to the end', async (t) => {
  await checked(t, async (page) => {
    await page.goto(searchUrl({ service: 'checkout', range: '1h' }));
    await page.locator('[data-testid="total"]', { hasText: '500 loaded' }).waitFor();
    await page.click('button.load-older');
    await page.locator('[data-testid="total"]', { hasText: '1,000 loaded' }).waitFor();
    await page.click('button.load-older');
    await page.locator('[data-testid="total"]', { hasText: '1,200 loaded' }).waitFor();
    assert.equal(await page.locator('button.load-older').count(), 0);
    // Virtual rows: far fewer in the DOM than loaded.
    assert.ok((await page.locator('.vrow').count()) < 100);
  });
});

test("the drawer's filter for and filter out narrow the search", async (t) => {
  await checked(t, async (page) => {
    await page.goto(searchUrl({ service: 'checkout', range: '1h' }));
    await page.locator('.vrow button.row').first().click();
    await page.locator('.drawer').waitFor();
    // Surrounding events: the newest event has older neighbours only, itself among them.
    await page.getByRole('button', { name: 'Surrounding events' }).click();
    const around = page.getByRole('region', { name: 'Surrounding events' }).locator('li');
    await around.nth(10).waitFor();
    assert.equal(await around.count(), 11);
    assert.equal(await around.last().getAttribute('class'), 'selected');
    const env = await page.locator('.drawer table.fields tr', { hasText: 'env' }).locator('td').first().textContent();
    await page.getByRole('button', { name: `Filter for env = ${env}` }).click();
    await page.waitForURL(new RegExp(`metadata.env=${env}`));
    const expected = env === 'prod' ? 300 : 900;
    await page.locator('[data-testid="total"]', { hasText: `${expected.toLocaleString('en-US')} events` }).waitFor();
    // And from the sidebar: leave out one region.
    await page.getByRole('button', { name: 'Exclude region = eu' }).click();
    await page.waitForURL(/metadata.region%21=eu|metadata.region!=eu/);
    // Every prod event is in us; of the dev ones, a third.
    await page.locator('[data-testid="total"]', { hasText: /^300 events/ }).waitFor();
  });
});

test('the URL reproduces the view in a new page, down to the open event', async (t) => {
  let url;
  let opened;
  await checked(t, async (page) => {
    await page.goto(searchUrl({ service: 'checkout', range: '1h', zone: 'utc', 'metadata.env': 'prod', columns: 'region' }));
    await page.locator('[data-testid="total"]', { hasText: '300 events' }).waitFor();
    await page.locator('.vrow button.row').nth(2).click();
    await page.locator('.drawer').waitFor();
    opened = await page.locator('.drawer h2').textContent();
    url = page.url();
  });
  await checked(t, async (page) => {
    await page.goto(url);
    await page.locator('.drawer h2', { hasText: opened }).waitFor();
    assert.equal(await page.locator('select[name="service"]').inputValue(), 'checkout');
    assert.equal(await page.locator('.chip').textContent(), 'env = prod×');
    assert.ok((await page.locator('.row.header').textContent()).includes('region'));
    assert.ok((await page.locator('.row.header').textContent()).includes('UTC'));
    // The permalink narrows to the event itself and still opens it.
    await page.getByRole('link', { name: 'Permalink' }).click();
    await page.locator('.drawer h2', { hasText: opened }).waitFor();
    assert.match(await page.getByTestId('total').textContent(), /^\d+ events/);
  });
});

test('keyboard: / focuses search, j/k move, Enter opens, arrows step, Esc closes', async (t) => {
  await checked(t, async (page) => {
    await page.goto(searchUrl({ service: 'checkout', range: '1h' }));
    await page.locator('.vrow button.row').first().waitFor();
    await page.locator('body').click({ position: { x: 5, y: 300 } });
    await page.keyboard.press('/');
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('name')), 'q');
    await page.locator('body').click({ position: { x: 5, y: 300 } });
    for (const key of ['j', 'j', 'j', 'k']) await page.keyboard.press(key);
    const third = await page.locator('.row.focused').getAttribute('data-id');
    await page.keyboard.press('Enter');
    await page.waitForURL(new RegExp(`event=${third}`));
    await page.keyboard.press('ArrowRight');
    await page.waitForURL((url) => url.searchParams.get('event') && url.searchParams.get('event') !== third);
    await page.keyboard.press('ArrowLeft');
    await page.waitForURL(new RegExp(`event=${third}`));
    await page.keyboard.press('Escape');
    await page.waitForURL((url) => !url.searchParams.has('event'));
    assert.equal(await page.locator('.drawer').count(), 0);
  });
});

test('dark mode follows the system until the toggle overrides it, across reloads', async (t) => {
  await checked(t, async (page) => {
    const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.goto(`${aurore.address}/ui/health`);
    assert.equal(await background(), 'rgb(18, 20, 23)');
    await page.emulateMedia({ colorScheme: 'light' });
    assert.equal(await background(), 'rgb(255, 255, 255)');
    await page.getByRole('button', { name: 'Theme: system' }).click();
    await page.getByRole('button', { name: 'Theme: dark' }).waitFor();
    assert.equal(await background(), 'rgb(18, 20, 23)');
    await page.reload();
    assert.equal(await background(), 'rgb(18, 20, 23)', 'the choice outlives a reload');
    await page.getByRole('button', { name: 'Theme: dark' }).click();
    await page.getByRole('button', { name: 'Theme: light' }).waitFor();
    await page.emulateMedia({ colorScheme: 'dark' });
    assert.equal(await background(), 'rgb(255, 255, 255)');
  });
});

test('tail shows an event posted after opening within 2 s, and pauses on scroll', async (t) => {
  await checked(t, async (page) => {
    await page.goto(`${aurore.address}/ui/tail?service=tailed`);
    // Live once the stream's headers came: the server subscribed before sending them.
    await page.locator('[data-testid="tail-status"]', { hasText: 'Live' }).waitFor();
    await post(aurore.address, { timestamp: new Date().toISOString(), service: 'tailed', message: 'fresh off the pipeline' });
    await page.getByText('fresh off the pipeline').waitFor({ timeout: 2000 });
    await post(aurore.address, Array.from({ length: 80 }, (_, i) => ({ timestamp: new Date().toISOString(), service: 'tailed', message: `burst ${i}` })));
    await page.getByText('burst 79').waitFor({ timeout: 5000 });
    await page.locator('.tail .scroller').evaluate((element) => (element.scrollTop = 0));
    await page.locator('[data-testid="tail-status"][data-state="paused"]').waitFor();
    const top = await page.locator('.tail .scroller').evaluate((element) => element.scrollTop);
    await post(aurore.address, [{ timestamp: new Date().toISOString(), service: 'tailed', message: 'while paused' }]);
    await page.locator('[data-testid="tail-resume"]', { hasText: '1 new' }).waitFor();
    assert.equal(await page.locator('.tail .scroller').evaluate((element) => element.scrollTop), top, 'the view kept its place');
    await page.click('[data-testid="tail-resume"]');
    await page.getByText('while paused').waitFor();
    await page.locator('[data-testid="tail-status"][data-state="following"]').waitFor();
  });
});

test('every page passes axe (no serious or critical violations) in light and dark, at 1280 and 390 px; screenshots', async (t) => {
  const pages = [
    ['search', searchUrl({ service: 'checkout', range: '1h' }), '.vrow button.row'],
    ['event', null, '.drawer pre'],
    ['tail', `${aurore.address}/ui/tail?service=checkout`, '[data-testid="tail-status"]'],
    ['dead-letters', `${aurore.address}/ui/dlq`, 'h1'],
    ['health', `${aurore.address}/ui/health`, '.cards'],
  ];
  for (const scheme of ['light', 'dark']) {
    for (const width of [1280, 390]) {
      const opened = await openPage(browser, { colorScheme: scheme, viewport: { width, height: 860 } });
      const { page } = opened;
      for (const [name, url, ready] of pages) {
        if (url) await page.goto(url);
        else await page.locator('.vrow button.row').first().click();
        await page.locator(ready).first().waitFor();
        if (name === 'health') await page.locator('.card', { hasText: 'Readiness' }).filter({ hasText: /^Readinessready$/ }).waitFor();
        const violations = await axeViolations(page);
        assert.deepEqual(violations, [], `${name} in ${scheme} at ${width} px`);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
        assert.ok(overflow <= 0, `${name} at ${width} px scrolls sideways by ${overflow} px`);
        await screenshot(page, `${name}-${width}`, scheme);
      }
      await opened.context.close();
      assert.deepEqual(opened.offsite, []);
      assert.deepEqual(opened.errors, []);
    }
  }
});
