'use strict';
// index.d.ts compiles, with the real `tsc`, in three small projects that import the package
// through node_modules (a symlink to this directory): DOM-only with no @types/node, CommonJS,
// and NodeNext ESM (both with @types/node).
const test = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const TYPES = path.join(ROOT, 'node_modules', '@types');

const PROJECTS = {
  dom: {
    withNodeTypes: false,
    tsconfig: { lib: ['es2022', 'dom'], types: [], module: 'esnext', moduleResolution: 'bundler', target: 'es2022' },
    main: `import IPCClient, { IPCClient as Named, PixlIPCClient, IPCError, ERRORS, DEFAULTS } from 'pixl-ipc-client';
const client: IPCClient = new Named('ws://127.0.0.1:7070/', null, { token: 't', tokenVia: 'protocol' });
const same: typeof IPCClient = PixlIPCClient;
client.on('data', (msg) => { document.title = String(msg.uri); });
export async function main(): Promise<number> {
  await client.connect();
  const reply = await client.send<{ x: number }>('/ipcserver/test/echo', { x: 1 });
  const err: IPCError = new IPCError(ERRORS.TIMEOUT);
  let sum = 0;
  for await (const item of client.stream<{ i: number }>('/ipcserver/test/stream', { count: 3 })) {
    sum += item.i;
  }
  const handle = client.stream<{ i: number }>('/ipcserver/test/stream', {}, { requestTimeout: 100 }, (item) => { sum += item.i; }, (e) => { if (e) throw e; });
  handle.cancel();
  return sum + reply.x + DEFAULTS.requestTimeout + err.code.length + (same === IPCClient ? 1 : 0);
}
`,
  },
  cjs: {
    withNodeTypes: true,
    tsconfig: { module: 'commonjs', target: 'es2022', types: ['node'] },
    main: `import IPCClient = require('pixl-ipc-client');
import { once } from 'node:events';
const client = new IPCClient('/tmp/pixl-ipc.sock', { debug() {}, error() {} }, { ca: Buffer.from('x'), errorObjects: true });
export async function main(): Promise<unknown> {
  await client.connect();
  const waited = once(client, 'reconnect');
  const error: IPCClient.IPCError = new IPCClient.IPCError(IPCClient.ERRORS.TIMEOUT);
  client.send('/x', {}, (err, result) => { if (err === 'request_timeout') { console.log(result, error.code); } });
  const replies: IPCClient.ReplyStream<number> = client.stream<number>('/x', {}, { maxStreamBufferBytes: 1024 });
  for await (const n of replies) { if (n > 2) break; }
  client.stream('/x', null, (item: number) => Promise.resolve(item), (err) => { if (err === 'stream_buffer_full') { console.log(replies.id, replies.bufferedBytes); } }).cancel();
  return Promise.race([waited, client.send<string>('/x', {})]);
}
`,
  },
  nodenext: {
    withNodeTypes: true,
    packageJson: { type: 'module' },
    tsconfig: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', types: ['node'] },
    main: `import IPCClient, { IPCClient as Named, IPCError, ERRORS, DEFAULTS, PixlIPCClient } from 'pixl-ipc-client';
import { once } from 'node:events';
const client = new Named('ws://127.0.0.1:7070/', null, { token: 't', ca: [Buffer.from('x'), 'pem'] });
const same: typeof IPCClient = PixlIPCClient;
await client.connect();
const waited = once(client, 'reconnect');
const error = new IPCError(ERRORS.TIMEOUT, 'late', { uri: '/x' });
console.log(await client.send<number>('/x', {}), error.code, DEFAULTS.requestTimeout, same, waited);
for await (const item of client.stream<{ done?: number }>('/ipcserver/test/stream', { count: 1 })) {
  console.log(item.done, DEFAULTS.maxStreamBufferBytes, ERRORS.STREAM_BUFFER_FULL);
}
`,
  },
};

for (const [name, project] of Object.entries(PROJECTS)) {
  test(`index.d.ts compiles in a ${name} TypeScript project`, (t) => {
    assert.ok(fs.existsSync(TSC), 'typescript is missing: run npm install');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pixl-ipc-tsc-${name}-`));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'pixl-ipc-client'), 'dir');
    if (project.withNodeTypes) {
      fs.symlinkSync(TYPES, path.join(dir, 'node_modules', '@types'), 'dir');
    }
    if (project.packageJson) {
      fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(project.packageJson));
    }
    const compilerOptions = Object.assign({ strict: true, noEmit: true }, project.tsconfig);
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['main.ts'] }, null, 2));
    fs.writeFileSync(path.join(dir, 'main.ts'), project.main);
    try {
      execFileSync(process.execPath, [TSC, '-p', dir], { encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      assert.fail(`tsc failed in the ${name} project:\n${err.stdout}${err.stderr}`);
    }
  });
}
