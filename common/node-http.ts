/**
 * `node:http` loaded with `require`, never with an ESM `import`.
 *
 * Why: an ESM import of a builtin materialises every export of its module
 * namespace, and `node:http` exports lazy getters (`WebSocket`,
 * `CloseEvent`, `MessageEvent`) that load undici, http2 and worker_threads
 * to answer them. Measured on Node 24.21: an ESM import of `node:http`
 * costs a process 12–14 MB of RSS more than `require('node:http')`, which
 * leaves the getters untouched — most of the gap between an idle sidecar and
 * its 80 MB budget (issue 14). Type-only imports (`import type … from
 * 'node:http'`) are erased and stay as they are.
 */
import type * as Http from 'node:http';
import { createRequire } from 'node:module';

export const http = createRequire(import.meta.url)('node:http') as typeof Http;
