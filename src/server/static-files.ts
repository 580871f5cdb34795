import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { sendJson } from './routes.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
};

/**
 * Serves the built web player (`web/dist`) at `/`. Only files inside the root are
 * served; anything else is 404. A missing build says how to make it.
 */
export async function serveStatic(root: string, urlPath: string, res: ServerResponse): Promise<boolean> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    sendJson(res, 400, { error: 'bad_request', message: 'malformed URL encoding' });
    return true;
  }
  const relative = decoded === '/' ? 'index.html' : decoded.replace(/^\/+/, '');
  const file = normalize(join(root, relative));
  if (file !== root && !file.startsWith(root.endsWith(sep) ? root : root + sep)) return false;
  const type = TYPES[extname(file)];
  if (!type) return false;
  let body: Buffer;
  try {
    body = await readFile(file);
  } catch (err) {
    if (relative === 'index.html' && (err as NodeJS.ErrnoException).code === 'ENOENT') {
      sendJson(res, 503, { error: 'web_not_built', message: 'the web player is not built: run `npm run build:web`' });
      return true;
    }
    return false;
  }
  res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', 'content-length': body.length });
  res.end(body);
  return true;
}
