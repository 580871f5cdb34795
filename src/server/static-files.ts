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
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.webp': 'image/webp',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webmanifest': 'application/manifest+json',
};

/**
 * Serves the built web player (`web/dist`), or the directory `server.web_root` names (a
 * static export such as the Dreamverse app's `out/`), at `/`. Only files inside the root
 * are served; anything else is 404. An extensionless path is tried as `.html` (static
 * exports link pages that way); `/_next/static/` is content-hashed, so cached for good.
 * A missing build says how to make it.
 */
export async function serveStatic(root: string, urlPath: string, res: ServerResponse): Promise<boolean> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    sendJson(res, 400, { error: 'bad_request', message: 'malformed URL encoding' });
    return true;
  }
  let relative = decoded === '/' ? 'index.html' : decoded.replace(/^\/+/, '');
  if (extname(relative) === '' && !relative.endsWith('/')) relative = `${relative}.html`;
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
  const cache = relative.startsWith('_next/static/') ? 'public, max-age=31536000, immutable' : 'no-cache';
  res.writeHead(200, { 'content-type': type, 'cache-control': cache, 'content-length': body.length });
  res.end(body);
  return true;
}
