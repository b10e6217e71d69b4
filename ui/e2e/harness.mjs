// What the browser tests run against: the real binary on a random port with its own
// database and journal, and Debian's Chromium driven by playwright-core. Every request
// the page makes is checked to stay on 127.0.0.1.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..');
const require = createRequire(import.meta.url);
export const axeSource = require('node:fs').readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const screenshots = join(root, 'target', 'ui-screenshots');

const adminUrl = process.env.AURORE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

function withDatabase(url, name) {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/** Starts `target/debug/aurore` with `env` added and waits until it serves. */
export async function startAurore(env = {}) {
  const binary = process.env.AURORE_BINARY ?? join(root, 'target', 'debug', 'aurore');
  if (!existsSync(binary)) throw new Error(`${binary} is missing: run \`cargo build --bin aurore\``);
  const database = `aurore_ui_${process.pid}_${Date.now()}`;
  execFileSync('psql', [adminUrl, '-qc', `CREATE DATABASE ${database}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  const journal = mkdtempSync(join(tmpdir(), 'aurore-ui-journal-'));
  const child = spawn(binary, [], {
    env: {
      PATH: process.env.PATH,
      AURORE__DATABASE__URL: withDatabase(adminUrl, database),
      AURORE__JOURNAL__DIR: journal,
      AURORE__SERVER__PORT: '0',
      AURORE__WRITER__LINGER: '10ms',
      RUST_LOG: 'warn,aurore=info',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = [];
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`aurore did not report its port:\n${log.join('\n')}`)), 30_000);
    let pending = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        log.push(line);
        if (process.env.TEST_LOG) console.error(`[aurore] ${line}`);
        const found = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
        if (found) {
          clearTimeout(timer);
          resolve(Number(found[1]));
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`aurore exited with ${code}:\n${log.join('\n')}`)));
  });
  const address = `http://127.0.0.1:${port}`;
  await until(async () => {
    const detailed = await fetch(`${address}/health/detailed`).then((r) => r.json()).catch(() => null);
    return detailed?.server?.status === 200;
  }, 30_000, 'aurore ready');
  return {
    address,
    log,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
      rmSync(journal, { recursive: true, force: true });
      execFileSync('psql', [adminUrl, '-qc', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`], { stdio: 'ignore' });
    },
  };
}

/** Polls `probe` until it returns something truthy. */
export async function until(probe, within, what) {
  const deadline = Date.now() + within;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function post(address, events, headers = {}) {
  const response = await fetch(`${address}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(events),
  });
  if (response.status !== 202) throw new Error(`POST /events: ${response.status} ${await response.text()}`);
  return response.json();
}

/** Waits until `service` holds `expected` events in `[from, to]`. */
export async function stored(address, service, expected, from, to, headers = {}) {
  const url = `${address}/events?service=${encodeURIComponent(service)}&from=${from}&to=${to}&pageSize=1`;
  await until(async () => (await fetch(url, { headers }).then((r) => r.json())).total === expected, 20_000, `${expected} events of ${service}`);
}

export const minutesAgo = (minutes) => new Date(Date.now() - minutes * 60_000).toISOString();

/** Chromium from Debian's package, without its calls home. */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/**
 * A page whose requests are all checked: anything for another host than 127.0.0.1 is
 * aborted and recorded in `offsite`; console errors (CSP violations among them) in `errors`.
 */
export async function openPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options });
  const offsite = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname !== '127.0.0.1') {
      offsite.push(url.href);
      return route.abort();
    }
    return route.continue();
  });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (message) => {
    // A refused request is logged by the browser as an error: tests that expect 401/403 say so.
    if (message.type() === 'error' && !/status of 40[13]/.test(message.text())) errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(String(error)));
  return { context, page, offsite, errors };
}

/** Serious and critical accessibility violations on the page as it is now. */
export async function axeViolations(page) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map((violation) => `${violation.id}: ${violation.nodes.map((node) => node.target.join(' ')).slice(0, 3).join(', ')}`);
}

/** Writes a screenshot of the page in `scheme` to target/ui-screenshots/<name>-<scheme>.png. */
export async function screenshot(page, name, scheme) {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}-${scheme}.png`), fullPage: false });
}
