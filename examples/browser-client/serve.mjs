// Builds the example page and serves it with livegen itself: the server API from the
// package's main entry (`livegen`), the page as its web root, the WebSocket on the same
// origin. `node serve.mjs [--port N]` (default 8010; 0 picks a free port).
import { createLivegenServer, parseConfig } from 'livegen';
import { buildExample } from './build.mjs';

const at = process.argv.indexOf('--port');
const port = at >= 0 ? Number(process.argv[at + 1]) : 8010;
const webRoot = await buildExample();
const server = createLivegenServer(parseConfig({ server: { port }, logging: { level: 'warn' } }), { webRoot });
const url = await server.listen();
console.log(`livegen example on ${url}/ (Ctrl-C stops it)`);
const stop = () => server.close().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
