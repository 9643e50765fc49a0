'use strict';
// What `npm pack` ships: the entries, types, LICENSE (a real file, the same as the repository's),
// README and examples; never the tests or node_modules.
const test = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');

test('npm pack --dry-run lists what a user needs and nothing of the tests', () => {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  const files = JSON.parse(out)[0].files.map((file) => file.path);
  for (const wanted of ['LICENSE', 'README.md', 'package.json', 'index.js', 'wrapper.mjs', 'index.d.ts',
    'browser.js', 'browser.mjs', 'examples/browser/index.html', 'examples/stream.js', 'lib/client-core.js', 'lib/transport-browser.js']) {
    assert.ok(files.includes(wanted), `${wanted} missing from the package:\n${files.join('\n')}`);
  }
  for (const file of files) {
    assert.ok(!/^(test|node_modules)\//.test(file), `${file} must not be packed`);
  }
  // Every file an entry point names is packed.
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const named = [];
  const collect = (value) => {
    if (typeof value === 'string') named.push(value);
    else if (value && typeof value === 'object') Object.values(value).forEach(collect);
  };
  collect([pkg.main, pkg.types, pkg.exports, pkg.browser]);
  for (const file of named) {
    const relative = file.replace(/^\.\//, '');
    if (relative !== 'package.json') {
      assert.ok(files.includes(relative), `${relative} is named by package.json but not packed`);
    }
  }
});

test('the package LICENSE is a regular file identical to the repository LICENSE', () => {
  const own = path.join(ROOT, 'LICENSE');
  assert.ok(fs.lstatSync(own).isFile(), 'LICENSE must be a real file (npm does not pack symlinks)');
  assert.strictEqual(fs.readFileSync(own, 'utf8'), fs.readFileSync(path.join(ROOT, '..', 'LICENSE'), 'utf8'));
});
