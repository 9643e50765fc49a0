// Drives the original pixl-ipc Node client (loaded unchanged from $ORIGINAL_PIXL_IPC) against our
// server: the scenarios of the original test suite plus 500 requests in flight. Prints one
// line per check and a closing "N passed, N failed".
const assert = require('assert');
const IPCClient = require(process.env.ORIGINAL_PIXL_IPC + '/client.js');
const SOCK = process.argv[2];
function sized(size) { const m = {}; for (let i = 0; i < size; i++) m['key_' + i] = 'GiveMe'.padEnd(1024, 'Dataz'); return m; }
const errors = [];
const stub = { debug() {}, error(code) { errors.push(code); } };
function p(fn) { return new Promise((res) => fn((err, data) => res([err, data]))); }
(async () => {
  const results = [];
  const check = (name, f) => { try { f(); results.push('ok   ' + name); } catch (e) { results.push('FAIL ' + name + ': ' + e.message); } };
  // bad socket path
  const bad = new IPCClient('/tmp/nosuch_server_unittest.sock', stub);
  const [cerr] = await p((cb) => bad.connect(cb));
  check('bad socket path -> ipc_socket_err', () => assert.equal(cerr, 'ipc_socket_err'));
  const [serr] = await p((cb) => bad.send('/x', {}, cb));
  check('send without stream -> no_open_stream', () => assert.equal(serr, 'no_open_stream'));

  const c = new IPCClient(SOCK, stub);
  await p((cb) => c.connect(cb));
  let [err, data] = await p((cb) => c.send('/ipcserver/test/echo', { message: 'foo', echo: true, bar: 9 }, cb));
  check('echo', () => { assert(!err); assert.deepStrictEqual(data, { message: 'foo', echo: true, bar: 9 }); });
  [err, data] = await p((cb) => c.send('/ipcserver/test/echo', sized(1024), cb));
  check('1 MiB echo', () => { assert(!err); assert(JSON.stringify(data).length >= 1024 * 1024); assert.deepStrictEqual(data, sized(1024)); });
  [err, data] = await p((cb) => c.send('/ipcserver/test/delay', { delay: 10 }, cb));
  check('delay', () => { assert(!err); assert.equal(data.delay, 10); });
  [err, data] = await p((cb) => c.send('/ipcserver/no_such_thing', { foo: 10 }, cb));
  check('unknown uri', () => { assert(!err); assert.equal(data.code, 'no_handler_found'); assert(data.message); });

  const short = new IPCClient(SOCK, stub, { requestTimeout: 100 });
  await p((cb) => short.connect(cb));
  const before = errors.length;
  [err] = await p((cb) => short.send('/ipcserver/test/delay', { delay: 300 }, cb));
  check('timeout', () => assert.equal(err, 'request_timeout'));
  await new Promise((r) => setTimeout(r, 400));
  check('late reply after timeout: no second callback, only a logged ipc_req_not_found', () => assert.deepStrictEqual(errors.slice(before), ['request_timeout', 'ipc_req_not_found']));

  const cte = new IPCClient(SOCK, stub, { codeToErr: true });
  await p((cb) => cte.connect(cb));
  [err, data] = await p((cb) => cte.send('/nope', {}, cb));
  check('codeToErr turns data.code into err', () => { assert.equal(err.code, 'no_handler_found'); });
  [err, data] = await p((cb) => cte.send('', {}, cb));
  check('codeToErr: empty uri -> top-level no_uri is err', () => { assert.equal(err.code, 'no_uri'); });

  const ua = new IPCClient(SOCK, stub, { userAgent: 'shortClient' });
  await p((cb) => ua.connect(cb));
  [err, data] = await p((cb) => ua.send('/ipcserver/test/echo', { x: 1 }, cb));
  check('custom userAgent client works', () => { assert(!err); assert.deepStrictEqual(data, { x: 1 }); });

  // 500 in flight, as the original benchmark does
  const many = await Promise.all(Array.from({ length: 500 }, (_, i) => p((cb) => c.send('/ipcserver/test/echo', { i }, cb))));
  check('500 requests in flight, each matched', () => many.forEach(([e, d], i) => { assert(!e); assert.equal(d.i, i); }));

  // stats from the server
  [err, data] = await p((cb) => c.send('/ipcserver/stats', {}, cb));
  check('stats endpoint', () => { assert(!err); assert(data.total.requests >= 500); });
  console.log(results.join('\n'));
  const failed = results.filter((r) => r.startsWith('FAIL')).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
