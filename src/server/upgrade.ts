import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** How long a refused socket may linger for the peer's FIN once the answer is out. */
const REFUSAL_LINGER_MS = 2000;

/**
 * The raw sockets of WebSocket upgrades the server has not handed to `ws` yet, or has
 * refused: Node stops tracking a socket once it emits 'upgrade' (no error listener, no
 * timeout, not closed by `closeAllConnections`), so the endpoint tracks them itself.
 */
export class UpgradeSockets {
  private readonly sockets = new Set<Duplex>();

  /**
   * Starts tracking `socket`. Every error is listened for at once: a peer that resets
   * the connection at any point must not become an unhandled 'error' event.
   */
  adopt(socket: Duplex, onError: (err: Error) => void): void {
    socket.on('error', onError);
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  /** The socket became a WebSocket: its life is the session's from now on. */
  release(socket: Duplex): void {
    this.sockets.delete(socket);
  }

  get size(): number {
    return this.sockets.size;
  }

  /** Drops every tracked socket (server shutdown). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }
}

/**
 * Answers an upgrade the server will not perform with a plain HTTP response and a JSON
 * reason, then closes the socket: at once once the peer closes its side, or after a
 * short linger, so a peer that never closes cannot hold a descriptor.
 */
export function refuseUpgrade(socket: Duplex, status: number, reason: string, headers: Record<string, string> = {}): void {
  const text = STATUS_CODES[status] ?? 'Refused';
  const body = JSON.stringify({ error: text.toLowerCase().replaceAll(' ', '_'), message: reason });
  const lines = [
    `HTTP/1.1 ${status} ${text}`,
    'Connection: close',
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  const timer = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  // Read and discard whatever the peer still sends, so its FIN is seen and the close is clean.
  socket.on('end', () => socket.destroy());
  socket.resume();
  if (socket.writable) socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
  else socket.destroy();
}

/** The peer's address, for logs and per-address limits. */
export function remoteAddress(socket: Duplex): string {
  return (socket as Partial<Socket>).remoteAddress ?? 'unknown';
}
