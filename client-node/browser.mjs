// ESM browser entry, with the same names as the Node entries (wrapper.mjs).
import IPCClient from './browser.js';

export const { IPCError, ERRORS, DEFAULTS, PixlIPCClient } = IPCClient;
export { IPCClient };
export default IPCClient;
