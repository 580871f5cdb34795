/**
 * The WebSocket the client needs, typed by shape so `src/client` compiles without DOM
 * types and accepts both the browser's `WebSocket` and the `ws` package's.
 */

/** Declared as a method so a handler taking a richer event type still fits (bivariance). */
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'];

export interface SocketMessageEvent {
  /** A string for text frames; an ArrayBuffer (or a view) for binary ones with `binaryType = 'arraybuffer'`. */
  data: unknown;
}

export interface SocketCloseEvent {
  code: number;
  reason: string;
  wasClean: boolean;
}

export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<SocketMessageEvent> | null;
  onclose: Handler<SocketCloseEvent> | null;
  onerror: Handler<unknown> | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** `readyState` values (the same in browsers and `ws`). */
export const SocketState = { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 } as const;

/** The global `WebSocket`, if this runtime has one (browsers, Node >= 22). */
export function globalWebSocket(): WebSocketConstructor | undefined {
  return (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
}

/**
 * The stream endpoint for a server address. An `http(s)://` address (the server, or the
 * player page it serves) becomes `ws(s)://host[:port]/v1/stream`, keeping only a `token`
 * query parameter; a `ws(s)://` URL is kept as it is, with `/v1/stream` added when it has
 * no path. `token` (an API key) is set as `?token=`, the one way a browser can present it.
 */
export function streamUrl(address: string, token?: string): string {
  const url = new URL(address);
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    const pageToken = url.searchParams.get('token');
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.pathname = '/v1/stream';
    url.search = '';
    if (pageToken) url.searchParams.set('token', pageToken);
  } else if (url.protocol === 'ws:' || url.protocol === 'wss:') {
    if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/stream';
  } else {
    throw new TypeError(`expected an http(s) or ws(s) URL, got ${address}`);
  }
  if (token) url.searchParams.set('token', token);
  url.hash = '';
  return url.toString();
}
