// The console against a service with API and admin keys: it asks for a key on 401, keeps
// it in sessionStorage, sends it as a bearer token and never in a URL; dead letters are
// reprocessed and deleted with the admin key only, deletion after confirmation.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, post, startAurore, until } from './harness.mjs';

const CLIENT = 'client-key-7f3a';
const ADMIN = 'admin-key-91c2';
let aurore;
let browser;
let entry;

before(async () => {
  // Markup cleaning would drop the NUL that makes the event poison.
  aurore = await startAurore({ AURORE__AUTH__API_KEYS: CLIENT, AURORE__AUTH__ADMIN_KEYS: ADMIN, AURORE__INGEST__SANITIZE: 'off' });
  browser = await launch();
  const bearer = { Authorization: `Bearer ${CLIENT}` };
  // PostgreSQL refuses NUL in text: the event is acknowledged, then dead-lettered.
  await post(aurore.address, [{ timestamp: new Date().toISOString(), service: 'poison', message: 'bad \u0000 byte' }], bearer);
  const list = await until(async () => {
    const body = await fetch(`${aurore.address}/dlq?service=poison`, { headers: bearer }).then((r) => r.json());
    return body.events?.length ? body : null;
  }, 20_000, 'a dead letter');
  entry = list.events[0];
});

after(async () => {
  await browser?.close();
  await aurore?.stop();
});

test('dead letters: a key is asked for, reprocess needs the admin key, delete asks first', async () => {
  const { page, context, offsite } = await openPage(browser);
  const urls = [];
  page.on('request', (request) => urls.push(request.url()));
  await page.goto(`${aurore.address}/ui/dlq`);

  await page.getByRole('dialog').getByLabel('API key').fill(CLIENT);
  await page.getByRole('button', { name: 'Use key' }).click();
  await page.getByTestId('dlq-total').filter({ hasText: '1' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('aurore.apiKey')), CLIENT);

  await page.getByRole('row', { name: /poison/ }).getByRole('button').click();
  await page.getByRole('button', { name: 'Reprocess' }).click();
  await page.getByRole('status').filter({ hasText: 'Refused' }).waitFor();
  await page.getByRole('dialog').getByLabel('Admin key').fill(ADMIN);
  await page.getByRole('button', { name: 'Use key' }).click();
  await page.getByRole('button', { name: 'Reprocess' }).click();
  await page.getByRole('status').filter({ hasText: 'sent through the pipeline again' }).waitFor();
  const admin = { Authorization: `Bearer ${ADMIN}` };
  await until(async () => (await fetch(`${aurore.address}/dlq/statistics`, { headers: admin }).then((r) => r.json())).reprocessed >= 1, 10_000, 'the entry marked reprocessed');

  await page.getByRole('row', { name: /poison/ }).first().getByRole('button').click();
  await page.getByRole('button', { name: 'Delete…' }).click();
  await page.getByRole('button', { name: 'Keep it' }).click();
  assert.equal((await fetch(`${aurore.address}/dlq/${entry.id}`, { headers: admin })).status, 200, 'kept when not confirmed');
  await page.getByRole('button', { name: 'Delete…' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete', exact: true }).click();
  const notice = await page.getByRole('status').filter({ hasText: 'deleted' }).textContent();
  // The reprocessed event may have been dead-lettered again meanwhile: the one deleted is gone.
  const deleted = /Entry (\S+) deleted/.exec(notice)[1];
  assert.equal((await fetch(`${aurore.address}/dlq/${deleted}`, { headers: admin })).status, 404);

  assert.ok(urls.length > 0);
  assert.deepEqual(urls.filter((url) => url.includes(CLIENT) || url.includes(ADMIN)), [], 'a key in a URL');
  assert.deepEqual(offsite, []);
  await context.close();
});

test('markup in events is shown as text, never run, with cleaning off', async () => {
  const bearer = { Authorization: `Bearer ${CLIENT}` };
  const hostile = '<img src=x onerror="window.__ran=1"><script>window.__ran=2</script>boom';
  await post(aurore.address, [{ timestamp: new Date().toISOString(), service: 'xss', message: hostile, metadata: { '<b>key</b>': '<svg onload="window.__ran=3">' } }], bearer);
  await until(async () => (await fetch(`${aurore.address}/services`, { headers: bearer }).then((r) => r.json())).services.some((s) => s.service === 'xss'), 10_000, 'the xss service');
  const { page, context, offsite } = await openPage(browser);
  await page.goto(`${aurore.address}/ui/?service=xss&range=15m`);
  await page.getByRole('dialog').getByLabel('API key').fill(CLIENT);
  await page.getByRole('button', { name: 'Use key' }).click();
  await page.locator('.vrow .message', { hasText: 'boom' }).click();
  assert.equal(await page.locator('.vrow .message').first().textContent(), hostile);
  await page.locator('.drawer').getByText('<svg onload="window.__ran=3">').waitFor();
  assert.equal(await page.locator('main img, main script, main svg[onload]').count(), 0);
  assert.equal(await page.evaluate(() => window.__ran), undefined);
  assert.deepEqual(offsite, []);
  await context.close();
});

test('the same actions are refused without a key', async () => {
  for (const [method, path] of [['PATCH', `/dlq/${entry.id}/reprocess`], ['DELETE', `/dlq/${entry.id}`], ['GET', '/dlq']]) {
    assert.equal((await fetch(`${aurore.address}${path}`, { method })).status, 401, `${method} ${path}`);
  }
  const withClientKey = await fetch(`${aurore.address}/dlq/${entry.id}/reprocess`, { method: 'PATCH', headers: { Authorization: `Bearer ${CLIENT}` } });
  assert.equal(withClientKey.status, 403);
});
