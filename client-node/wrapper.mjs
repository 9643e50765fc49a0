// ESM entry with the same names as the CommonJS one.
import IPCClient from './index.js';

export const { IPCError, ERRORS, DEFAULTS, PixlIPCClient } = IPCClient;
export { IPCClient };
export default IPCClient;
