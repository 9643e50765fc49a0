'use strict';
// A bundler's browser build: `import { IPCClient } from 'pixl-ipc-client'` bundled by esbuild for
// the browser resolves to the browser entry (no node:net, no ws), and the bundle, loaded in
// headless Chromium, talks to the real server: a request and its reply, a push, streamed replies
// (a full stream, a break that cancels, the bounded buffer), and the token in a
// Sec-WebSocket-Protocol entry (the browser's default), never in the URL.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const esbuild = require('esbuild');
const { chromium } = require('playwright-core');
const { spawnServer } = require('./helpers');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ROOT = path.join(__dirname, '..');
const TOKEN = 'bundle-tøken';

const ENTRY = `
import Default, { IPCClient, PixlIPCClient, IPCError, ERRORS, DEFAULTS } from 'pixl-ipc-client';
import Subpath from 'pixl-ipc-client/browser';
window.runPixl = async (url, token) => {
  const same = Default === IPCClient && PixlIPCClient === IPCClient && Subpath === IPCClient &&
    IPCError === IPCClient.IPCError && ERRORS.TIMEOUT === 'request_timeout' && DEFAULTS.requestTimeout === 10000;
  const client = new IPCClient(url, null, { token, requestTimeout: 5000, autoReconnect: 0 });
  try {
    await client.connect();
  } catch (err) {
    return { connectError: String(err) };
  }
  const reply = await client.send('/ipcserver/test/echo', { text: 'héllo from the bundle' });
  // The binary has no push trigger: a request without an id gets a reply without one, which
  // the client treats exactly like a push.
  const pushed = new Promise((resolve) => client.once('data', resolve));
  client.connection.write('{"uri":"/ipcserver/test/echo","data":{"pushed":true}}\\n');
  const push = await pushed;
  await client.close();
  return { same, reply, push };
};
// Streamed replies through the browser transport.
window.runStream = async (url, token) => {
  const client = new IPCClient(url, null, { token, requestTimeout: 5000, autoReconnect: 0 });
  await client.connect();
  const pushes = [];
  client.on('data', (msg) => pushes.push(msg));
  const full = [];
  for await (const item of client.stream('/ipcserver/test/stream', { count: 3, interval: 5 })) {
    full.push(item);
  }
  const broken = [];
  for await (const item of client.stream('/ipcserver/test/stream', { count: 1000000, interval: 20 })) {
    broken.push(item);
    if (broken.length === 2) break;
  }
  const after = await client.send('/ipcserver/test/echo', 'after the break');
  // The browser cannot stop reading a WebSocket: a stream not consumed past its limit fails.
  const flood = client.stream('/ipcserver/test/stream', { count: 5000 }, { maxStreamBufferBytes: 1000 });
  await flood.next();
  await new Promise((resolve) => setTimeout(resolve, 300));
  let held = 0;
  let overflow = null;
  try {
    for await (const item of flood) held += 1;
  } catch (err) {
    overflow = String(err);
  }
  // Give the 'cancelled' lines time to arrive: they must be swallowed, not pushed.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const swallowedLeft = client.swallowed.size;
  const stillUsable = await client.send('/ipcserver/test/echo', 'still usable');
  await client.close();
  return { full, broken, after, overflow, heldBounded: held > 10 && held < 200, pushes, swallowedLeft, stillUsable };
};
`;

/** Bundles ENTRY for the browser; the package is found through node_modules (a symlink here). */
async function bundle(dir) {
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'pixl-ipc-client'), 'dir');
  fs.writeFileSync(path.join(dir, 'entry.js'), ENTRY);
  const result = await esbuild.build({
    entryPoints: [path.join(dir, 'entry.js')],
    bundle: true,
    platform: 'browser',
    format: 'iife',
    outfile: path.join(dir, 'bundle.js'),
    metafile: true,
    logLevel: 'silent',
  });
  return Object.keys(result.metafile.inputs);
}

function serve(dir) {
  const files = {
    '/': ['text/html', '<!doctype html><meta charset="utf-8"><title>bundle</title><script src="bundle.js"></script>'],
    '/bundle.js': ['text/javascript', fs.readFileSync(path.join(dir, 'bundle.js'))],
  };
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': file[0] }).end(file[1]);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('an esbuild browser bundle of the package runs in headless Chromium against the server', async (t) => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixl-ipc-bundle-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const inputs = await bundle(dir);
  assert.ok(inputs.some((input) => input.endsWith('browser.js')), inputs.join('\n'));
  assert.ok(!inputs.some((input) => /transport-node|node_modules\/ws\/|index\.js$/.test(input)), inputs.join('\n'));

  const page_server = await serve(dir);
  t.after(() => page_server.close());
  const origin = `http://127.0.0.1:${page_server.address().port}`;
  fs.writeFileSync(path.join(dir, 'token'), TOKEN + '\n');
  const server = await spawnServer({ args: ['--ws-origin', origin, '--ws-token-file', path.join(dir, 'token')] });
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
  const upgrades = [];
  page.on('websocket', (ws) => upgrades.push(ws.url()));
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => typeof window.runPixl === 'function', null, { timeout: 10000 });

  const result = await page.evaluate(([url, token]) => window.runPixl(url, token), [server.url, TOKEN]);
  assert.deepStrictEqual(result, {
    same: true,
    reply: { text: 'héllo from the bundle' },
    push: { ipcReqID: null, data: { pushed: true } },
  });
  const streamed = await page.evaluate(([url, token]) => window.runStream(url, token), [server.url, TOKEN]);
  assert.deepStrictEqual(streamed, {
    full: [{ i: 0 }, { i: 1 }, { i: 2 }, { done: 3 }],
    broken: [{ i: 0 }, { i: 1 }],
    after: 'after the break',
    overflow: 'stream_buffer_full',
    heldBounded: true,
    pushes: [],
    swallowedLeft: 0,
    stillUsable: 'still usable',
  });
  const refused = await page.evaluate(([url]) => window.runPixl(url, 'wrong'), [server.url]);
  assert.ok(refused.connectError, JSON.stringify(refused));
  assert.ok(upgrades.length >= 2 && upgrades.every((url) => !url.includes('token')), upgrades.join('\n'));
  assert.deepStrictEqual(problems, []);
});
