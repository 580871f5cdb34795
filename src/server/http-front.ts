import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AccessControl, AccessRefusal } from './access.js';
import type { ServeConfig } from './config.js';
import { sendJson, type Route } from './routes.js';
import { serveStatic } from './static-files.js';

/** Routes that `auth.protect_status` puts behind the API key; health routes stay open. */
const PROTECTED_ROUTES = new Set(['/status', '/metrics']);

function refuseHttp(res: ServerResponse, refusal: AccessRefusal): void {
  if (refusal.status === 401) res.setHeader('www-authenticate', 'Bearer');
  sendJson(res, refusal.status, { error: STATUS_CODES[refusal.status]?.toLowerCase().replaceAll(' ', '_'), message: refusal.reason });
}

/**
 * The HTTP side of a server or a router: GET/HEAD only, `/status` and `/metrics` behind
 * the key when `auth.protect_status` is on, the named routes, then the player's static
 * files; a route that throws answers 500 and is logged. Upgrades are the caller's.
 */
export function createHttpFront(
  limits: ServeConfig['limits'],
  options: { routes: ReadonlyMap<string, Route>; access: AccessControl; webRoot: string; logger: Logger },
): Server {
  const { routes, access, webRoot, logger } = options;
  const http = createServer(
    {
      headersTimeout: limits.http_headers_timeout_seconds * 1000,
      requestTimeout: limits.http_request_timeout_seconds * 1000,
      // How often Node checks those two timeouts; a slowloris is dropped within a second of its deadline.
      connectionsCheckingInterval: 1000,
    },
    (req: IncomingMessage, res: ServerResponse) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        sendJson(res, 405, { error: 'method_not_allowed', message: `${req.method} is not allowed on ${path}` });
        return;
      }
      if (PROTECTED_ROUTES.has(path)) {
        const decision = access.checkStatusRoute(req);
        if (!decision.ok) {
          refuseHttp(res, decision.refusal);
          return;
        }
      }
      const route = routes.get(path);
      const answer = route
        ? Promise.resolve(route(req, res))
        : serveStatic(webRoot, path, res).then((served) => {
            if (!served) sendJson(res, 404, { error: 'not_found', message: `no route ${path}` });
          });
      answer.catch((err: unknown) => {
        logger.error({ err, path }, 'route failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal_error', message: 'internal error' });
      });
    },
  );
  http.maxConnections = limits.max_connections;
  return http;
}
