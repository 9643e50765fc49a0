'use strict';
// Test helpers: the real pixl-ipc-server binary on a temp socket (and a loopback port), stopped
// by PID; a logger that counts errors like the original test suite's stub.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');

const BINARY = process.env.PIXL_IPC_SERVER_BIN || path.join(__dirname, '..', '..', 'target', 'debug', 'pixl-ipc-server');

function tempSocket() {
  return path.join(os.tmpdir(), `pixl-ipc-node-${process.pid}-${crypto.randomBytes(4).toString('hex')}.sock`);
}

/** Starts the server; resolves with {socket, url, child, stop(), kill()} once it listens. */
function spawnServer({ socket = tempSocket(), args = [] } = {}) {
  if (!fs.existsSync(BINARY)) {
    throw new Error(`pixl-ipc-server not found at ${BINARY}: build it or set PIXL_IPC_SERVER_BIN`);
  }
  const child = spawn(BINARY, ['--socket', socket, '--ws', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start')), 15000);
    let banner = '';
    child.stdout.on('data', (chunk) => {
      banner += chunk.toString();
      if (!banner.includes('\n')) {
        return;
      }
      clearTimeout(timer);
      const url = banner.split(/\s+/).find((word) => word.startsWith('ws://'));
      const exited = new Promise((done) => child.once('exit', done));
      const signal = (name) => {
        if (child.exitCode === null && child.signalCode === null) {
          process.kill(child.pid, name);
        }
        return exited;
      };
      resolve({ socket, url, child, stop: () => signal('SIGTERM'), kill: () => signal('SIGKILL') });
    });
    child.once('exit', (code) => reject(new Error(`server exited early (${code})`)));
  });
}

/** The original suite's logger stub: counts error calls. */
class CountingLogger {
  constructor() {
    this.reset();
  }

  reset() {
    this.errorCount = 0;
    this.errors = [];
    this.debugs = [];
  }

  debug(level, message, data) {
    this.debugs.push({ level, message, data });
  }

  error(code, message) {
    this.errorCount += 1;
    this.errors.push(code);
  }
}

function sizedMessage(size) {
  const message = {};
  for (let i = 0; i < size; i++) {
    message['key_' + i] = 'GiveMe'.padEnd(1024, 'Dataz');
  }
  return message;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = { spawnServer, tempSocket, CountingLogger, sizedMessage, sleep };
