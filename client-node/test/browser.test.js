'use strict';
// The browser entry in headless Chromium (Debian's chromium, driven by playwright-core): the
// example page, served from localhost, calls the real server over WebSocket.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { spawnServer } = require('./helpers');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ROOT = path.join(__dirname, '..');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript' };

/** Serves the package directory on a loopback port. */
function serveStatic() {
  const server = http.createServer((req, res) => {
    const file = path.join(ROOT, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!file.startsWith(ROOT) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('the example page echoes through the server in headless Chromium', async (t) => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)`);
  const http = await serveStatic();
  t.after(() => http.close());
  const origin = `http://127.0.0.1:${http.address().port}`;
  // The page's origin is the only one the server accepts: the browser sends it on the upgrade.
  const server = await spawnServer({ args: ['--ws-origin', origin] });
  t.after(() => server.kill());

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(err.message));
  await page.goto(`${origin}/examples/browser/index.html?server=${encodeURIComponent(server.url)}`);
  await page.waitForSelector('#send:not([disabled])', { timeout: 10000 });
  assert.match(await page.textContent('#status'), /^connected to ws:\/\/127\.0\.0\.1:\d+\/$/);
  await page.fill('#text', 'héllo from Chromium');
  await page.click('#send');
  await page.waitForFunction(() => document.querySelector('#result').textContent.startsWith('echo:'), null, { timeout: 10000 });
  assert.strictEqual(await page.textContent('#result'), 'echo: héllo from Chromium');
  assert.deepStrictEqual(problems, []);
});
